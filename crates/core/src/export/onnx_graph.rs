//! The ONNX messages this program writes (`ModelProto`, `GraphProto`, `NodeProto`, `TensorProto`,
//! `ValueInfoProto`, `AttributeProto`, `OperatorSetIdProto`), as plain structs that encode
//! themselves with [`super::protobuf`].
//!
//! Field numbers are those of `onnx.proto` (ONNX 1.x); only the fields used here are written.
//! Tensors hold their values as little-endian `raw_data`.

use super::protobuf::Message;

/// `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;
/// `TensorProto.DataType.INT64`.
pub const INT64: i32 = 7;

/// An attribute value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOAT`.
    Float(f32),
    /// `STRING`.
    String(String),
}

impl Attr {
    /// The `AttributeProto` named `name` holding this value.
    fn encode(&self, name: &str) -> Message {
        // AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, INTS 7).
        let mut m = Message::new();
        m.string(1, name);
        match self {
            Attr::Float(v) => m.float(2, *v).int32(20, 1),
            Attr::Int(v) => m.int64(3, *v).int32(20, 2),
            Attr::String(v) => m.string(4, v).int32(20, 3),
            Attr::Ints(v) => m.packed_int64(8, v).int32(20, 7),
        };
        m
    }
}

/// One operator of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The operator, e.g. `Conv`.
    pub op_type: String,
    /// A name unique in the graph.
    pub name: String,
    /// Names of the values it reads.
    pub inputs: Vec<String>,
    /// Names of the values it writes.
    pub outputs: Vec<String>,
    /// Its attributes, in the order written.
    pub attrs: Vec<(String, Attr)>,
}

impl Node {
    fn encode(&self) -> Message {
        // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
        let mut m = Message::new();
        for i in &self.inputs {
            m.string(1, i);
        }
        for o in &self.outputs {
            m.string(2, o);
        }
        m.string(3, &self.name).string(4, &self.op_type);
        for (name, value) in &self.attrs {
            m.message(5, &value.encode(name));
        }
        m
    }
}

/// The values of a constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `FLOAT`.
    F32(Vec<f32>),
    /// `INT64`.
    I64(Vec<i64>),
}

/// A named constant (a weight) of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Initializer {
    /// The value's name, as nodes read it.
    pub name: String,
    /// The shape; empty for a scalar.
    pub dims: Vec<i64>,
    /// The values, row-major; as many as the product of `dims`.
    pub values: Values,
}

impl Initializer {
    fn encode(&self) -> Message {
        // TensorProto: dims 1, data_type 2, name 8, raw_data 9.
        let (data_type, raw): (i32, Vec<u8>) = match &self.values {
            Values::F32(v) => (FLOAT, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Values::I64(v) => (INT64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        let mut m = Message::new();
        m.packed_int64(1, &self.dims).int32(2, data_type).string(8, &self.name).bytes(9, &raw);
        m
    }

    /// Number of values the shape calls for.
    pub fn element_count(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

/// One dimension of a graph input's or output's shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A size chosen at run time, by name (e.g. the batch `N`).
    Named(String),
}

/// A graph input or output: a name, an element type and a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// Element type ([`FLOAT`] or [`INT64`]).
    pub elem_type: i32,
    /// The shape.
    pub dims: Vec<Dim>,
    /// What it holds, for people reading the model.
    pub doc: String,
}

impl ValueInfo {
    fn encode(&self) -> Message {
        // TensorShapeProto.Dimension: dim_value 1, dim_param 2; TensorShapeProto: dim 1.
        let mut shape = Message::new();
        for d in &self.dims {
            let mut dim = Message::new();
            match d {
                Dim::Fixed(n) => dim.int64(1, *n),
                Dim::Named(s) => dim.string(2, s),
            };
            shape.message(1, &dim);
        }
        // TypeProto.Tensor: elem_type 1, shape 2; TypeProto: tensor_type 1.
        let mut tensor = Message::new();
        tensor.int32(1, self.elem_type).message(2, &shape);
        let mut ty = Message::new();
        ty.message(1, &tensor);
        // ValueInfoProto: name 1, type 2, doc_string 3.
        let mut m = Message::new();
        m.string(1, &self.name).message(2, &ty);
        if !self.doc.is_empty() {
            m.string(3, &self.doc);
        }
        m
    }
}

/// A computation graph: nodes in topological order, their weights, inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    /// The operators, each after the ones whose outputs it reads.
    pub nodes: Vec<Node>,
    /// The weights.
    pub initializers: Vec<Initializer>,
    /// The inputs the caller feeds.
    pub inputs: Vec<ValueInfo>,
    /// The outputs the caller reads.
    pub outputs: Vec<ValueInfo>,
    /// What the graph computes, for people reading the model.
    pub doc: String,
}

impl Graph {
    /// Adds a float weight named `name` of shape `dims` and returns its name.
    pub fn weight(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.initializers.push(Initializer { name: name.to_owned(), dims, values: Values::F32(values) });
        name.to_owned()
    }

    /// Adds a node whose single output is named after the node, and returns that name.
    pub fn node(&mut self, op_type: &str, name: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.nodes.push(Node {
            op_type: op_type.to_owned(),
            name: name.to_owned(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![name.to_owned()],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        });
        name.to_owned()
    }

    /// The first problem found: a node reading a value that nothing defined before it, a name
    /// defined twice, a weight whose values do not fill its shape, or an output never computed.
    pub fn check(&self) -> Result<(), String> {
        let mut defined = std::collections::HashSet::new();
        let define = |defined: &mut std::collections::HashSet<String>, name: &str, by: &str| match defined
            .insert(name.to_owned())
        {
            true => Ok(()),
            false => Err(format!("the value '{name}' is defined twice (again by {by})")),
        };
        for v in &self.inputs {
            define(&mut defined, &v.name, "an input")?;
        }
        for t in &self.initializers {
            let len = match &t.values {
                Values::F32(v) => v.len(),
                Values::I64(v) => v.len(),
            };
            if len != t.element_count() {
                return Err(format!("weight '{}' has {len} values for shape {:?}", t.name, t.dims));
            }
            define(&mut defined, &t.name, "a weight")?;
        }
        for n in &self.nodes {
            if let Some(missing) = n.inputs.iter().find(|i| !defined.contains(i.as_str())) {
                return Err(format!("node '{}' reads '{missing}' before anything computes it", n.name));
            }
            for o in &n.outputs {
                define(&mut defined, o, &format!("node '{}'", n.name))?;
            }
        }
        match self.outputs.iter().find(|o| !defined.contains(&o.name)) {
            Some(o) => Err(format!("output '{}' is never computed", o.name)),
            None => Ok(()),
        }
    }

    fn encode(&self) -> Message {
        // GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12.
        let mut m = Message::new();
        for n in &self.nodes {
            m.message(1, &n.encode());
        }
        m.string(2, &self.name);
        for t in &self.initializers {
            m.message(5, &t.encode());
        }
        if !self.doc.is_empty() {
            m.string(10, &self.doc);
        }
        for v in &self.inputs {
            m.message(11, &v.encode());
        }
        for v in &self.outputs {
            m.message(12, &v.encode());
        }
        m
    }
}

/// A whole ONNX model: the graph and what describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The ONNX IR version the file follows.
    pub ir_version: i64,
    /// The version of the default (`ai.onnx`) operator set the nodes follow.
    pub opset: i64,
    /// The program that wrote it.
    pub producer_name: String,
    /// That program's version.
    pub producer_version: String,
    /// What the model does and how to feed it.
    pub doc: String,
    /// Key-value pairs that runtimes show as the model's metadata.
    pub metadata: Vec<(String, String)>,
    /// The graph.
    pub graph: Graph,
}

impl Model {
    /// The model as the bytes of an `.onnx` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        // OperatorSetIdProto: domain 1, version 2 (the empty domain is `ai.onnx`).
        let mut opset = Message::new();
        opset.string(1, "").int64(2, self.opset);
        // ModelProto: ir_version 1, producer_name 2, producer_version 3, model_version 5,
        // doc_string 6, graph 7, opset_import 8, metadata_props 14 (StringStringEntryProto: key 1, value 2).
        let mut m = Message::new();
        m.int64(1, self.ir_version)
            .string(2, &self.producer_name)
            .string(3, &self.producer_version)
            .int64(5, 1)
            .string(6, &self.doc)
            .message(7, &self.graph.encode())
            .message(8, &opset);
        for (key, value) in &self.metadata {
            let mut entry = Message::new();
            entry.string(1, key).string(2, value);
            m.message(14, &entry);
        }
        m.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Graph {
        let mut g = Graph { name: "g".into(), ..Graph::default() };
        g.inputs.push(ValueInfo {
            name: "x".into(),
            elem_type: FLOAT,
            dims: vec![Dim::Named("N".into())],
            doc: "".into(),
        });
        let w = g.weight("w", &[1], vec![2.0]);
        let y = g.node("Mul", "y", &["x", &w], vec![]);
        g.outputs.push(ValueInfo { name: y, elem_type: FLOAT, dims: vec![Dim::Fixed(1)], doc: "out".into() });
        g
    }

    #[test]
    fn export_graph_check_finds_each_kind_of_mistake() {
        assert_eq!(tiny().check(), Ok(()));
        let mut g = tiny();
        g.nodes[0].inputs[1] = "nothing".into();
        assert!(g.check().unwrap_err().contains("reads 'nothing'"));
        let mut g = tiny();
        g.weight("x", &[1], vec![0.0]);
        assert!(g.check().unwrap_err().contains("'x' is defined twice"));
        let mut g = tiny();
        g.weight("v", &[2, 3], vec![0.0; 5]);
        assert!(g.check().unwrap_err().contains("5 values for shape [2, 3]"));
        let mut g = tiny();
        g.outputs[0].name = "z".into();
        assert!(g.check().unwrap_err().contains("'z' is never computed"));
    }

    #[test]
    fn export_attributes_carry_their_type() {
        // name "k" (0a 01 6b), i = 3 (18 03), type INT = 2 (a0 01 02).
        assert_eq!(Attr::Int(3).encode("k").into_bytes(), [0x0a, 0x01, b'k', 0x18, 0x03, 0xa0, 0x01, 0x02]);
        // ints [1, 2] packed (42 02 01 02), type INTS = 7.
        assert_eq!(
            Attr::Ints(vec![1, 2]).encode("k").into_bytes(),
            [0x0a, 0x01, b'k', 0x42, 0x02, 0x01, 0x02, 0xa0, 0x01, 0x07]
        );
    }

    #[test]
    fn export_model_bytes_start_with_the_ir_version_and_hold_the_weights_raw() {
        let model = Model {
            ir_version: 7,
            opset: 13,
            producer_name: "p".into(),
            producer_version: "1".into(),
            doc: String::new(),
            metadata: vec![("k".into(), "v".into())],
            graph: tiny(),
        };
        let bytes = model.to_bytes();
        assert_eq!(&bytes[..2], [0x08, 0x07]);
        let two = 2.0f32.to_le_bytes();
        assert!(bytes.windows(4).any(|w| w == two), "the weight's raw little-endian bytes are in the file");
        // The opset import: field 8 holding domain "" and version 13.
        assert!(bytes.windows(6).any(|w| w == [0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d]));
    }
}
