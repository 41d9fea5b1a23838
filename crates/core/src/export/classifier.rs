//! The whole classifier as an ONNX graph: input scaling, faceres, the model's head and softmax.
//!
//! The layers mirror `gc_engine::faceres::Faceres::from_vb` (same tensor names, the depthwise
//! `scale` folded into its weights, TF "SAME" padding written out as explicit pads) and
//! `gc_engine::head::Head` (an optional relu hidden layer, then the output layer). The graph takes
//! RGB 0..255 pixels: it subtracts the VGGFace2 means itself, and `conv0`'s weights have their
//! input channels reversed so that they read RGB where faceres was trained on BGR.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use gc_engine::faceres::{BGR_MEAN, BLOCKS, FEATURE_DIM, INPUT_SIZE};
use gc_engine::head::{Dense, Head};
use gc_engine::layer::same_padding_3x3;

use super::onnx_graph::{Attr, Dim, FLOAT, Graph, ValueInfo};
use super::{FEATURES, INPUT, LOGITS, PROBS};

/// The faceres tensors the graph needs, read from the weight file as Candle's faceres reads them.
pub struct FaceresWeights {
    /// `conv0.weight` `[32, 3, 3, 3]` (input channels in B, G, R order) and `conv0.bias` `[32]`.
    conv0: (Tensor, Tensor),
    /// Per block: the depthwise weight `[C, 1, 3, 3]` with `scale` folded in, its bias (`shift`),
    /// the pointwise weight `[C_out, C_in, 1, 1]` and bias.
    blocks: Vec<[Tensor; 4]>,
}

impl FaceresWeights {
    /// Reads the tensors from a `VarBuilder` over the faceres weights, with the names and shapes
    /// `Faceres::from_vb` uses.
    pub fn from_vb(vb: &VarBuilder) -> candle_core::Result<Self> {
        let conv0 = (vb.get((32, 3, 3, 3), "conv0.weight")?, vb.get(32, "conv0.bias")?);
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (i, &(_, cin, cout)) in BLOCKS.iter().enumerate() {
            let b = vb.pp(format!("block{}", i + 1));
            let scale = b.get(cin, "dw.scale")?.reshape((cin, 1, 1, 1))?;
            let dw = b.get((cin, 1, 3, 3), "dw.weight")?.broadcast_mul(&scale)?;
            let shift = b.get(cin, "dw.shift")?;
            let pw = b.get((cout, cin, 1, 1), "pw.weight")?;
            let pw_bias = b.get(cout, "pw.bias")?;
            blocks.push([dw, shift, pw, pw_bias]);
        }
        Ok(Self { conv0, blocks })
    }
}

/// A tensor's values, row-major, and its shape.
fn values(t: &Tensor) -> candle_core::Result<(Vec<usize>, Vec<f32>)> {
    let t = t.to_dtype(candle_core::DType::F32)?;
    Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
}

/// Adds `t` as the weight `name`.
fn add(g: &mut Graph, name: &str, t: &Tensor) -> candle_core::Result<String> {
    let (dims, v) = values(t)?;
    Ok(g.weight(name, &dims, v))
}

/// `conv0`'s weight with its input channels reversed (B, G, R to R, G, B).
fn rgb_conv0(w: &Tensor) -> candle_core::Result<Tensor> {
    let parts: Vec<Tensor> = (0..3).rev().map(|c| w.narrow(1, c, 1)).collect::<candle_core::Result<_>>()?;
    Tensor::cat(&parts, 1)
}

/// Adds a 3x3 (or 1x1) convolution with TF "SAME" padding for a `side x side` input, then relu6;
/// returns the output's name and side.
#[allow(clippy::too_many_arguments)]
fn conv_relu6(
    g: &mut Graph,
    name: &str,
    x: &str,
    (w, b): (&str, &str),
    kernel: usize,
    stride: usize,
    groups: usize,
    side: usize,
) -> (String, usize) {
    let pads = match kernel {
        3 => {
            let (t, l, bottom, r) = same_padding_3x3(stride, side, side);
            [t, l, bottom, r].map(|p| p as i64).to_vec()
        }
        _ => vec![0; 4],
    };
    let k = kernel as i64;
    let mut attrs = vec![
        ("kernel_shape", Attr::Ints(vec![k, k])),
        ("strides", Attr::Ints(vec![stride as i64; 2])),
        ("pads", Attr::Ints(pads.clone())),
    ];
    if groups > 1 {
        attrs.push(("group", Attr::Int(groups as i64)));
    }
    let y = g.node("Conv", name, &[x, w, b], attrs);
    let y = g.node("Clip", &format!("{name}.relu6"), &[&y, RELU6_MIN, RELU6_MAX], vec![]);
    let out = (side + (pads[0] + pads[2]) as usize - kernel) / stride + 1;
    (y, out)
}

/// The shared bounds of every relu6 (`Clip`'s min and max inputs).
const RELU6_MIN: &str = "relu6.min";
/// See [`RELU6_MIN`].
const RELU6_MAX: &str = "relu6.max";

/// A dense layer `x W^T + b` (`Gemm` with `transB`).
fn dense(g: &mut Graph, name: &str, x: &str, d: &Dense) -> candle_core::Result<String> {
    let w = add(g, &format!("{name}.weight"), &d.weight)?;
    let b = add(g, &format!("{name}.bias"), &d.bias)?;
    Ok(g.node("Gemm", name, &[x, &w, &b], vec![("transB", Attr::Int(1))]))
}

/// The graph of the whole classifier: `image` (RGB 0..255, NCHW) in; `probs`, `logits` and
/// `features` out.
pub fn build(weights: &FaceresWeights, head: &Head, classes: &[String], doc: &str) -> candle_core::Result<Graph> {
    let mut g = Graph { name: "gender-classifier".into(), doc: doc.into(), ..Graph::default() };
    let n = || Dim::Named("N".into());
    let side = INPUT_SIZE as i64;
    g.inputs.push(ValueInfo {
        name: INPUT.into(),
        elem_type: FLOAT,
        dims: vec![n(), Dim::Fixed(3), Dim::Fixed(side), Dim::Fixed(side)],
        doc: super::INPUT_DESCRIPTION.into(),
    });
    g.weight(RELU6_MIN, &[], vec![0.0]);
    g.weight(RELU6_MAX, &[], vec![6.0]);

    // RGB means, [1, 3, 1, 1]: the graph's input is RGB, faceres' means are listed B, G, R.
    let mean = g.weight("input.rgb_mean", &[1, 3, 1, 1], BGR_MEAN.iter().rev().copied().collect());
    let x = g.node("Sub", "input.centred", &[INPUT, &mean], vec![]);

    let w0 = add(&mut g, "conv0.weight", &rgb_conv0(&weights.conv0.0)?)?;
    let b0 = add(&mut g, "conv0.bias", &weights.conv0.1)?;
    let (mut x, mut side) = conv_relu6(&mut g, "conv0", &x, (&w0, &b0), 3, 2, 1, INPUT_SIZE);
    for (i, ([dw, shift, pw, pw_bias], &(stride, cin, _))) in weights.blocks.iter().zip(BLOCKS.iter()).enumerate() {
        let p = format!("block{}", i + 1);
        let w = add(&mut g, &format!("{p}.dw.weight"), dw)?;
        let b = add(&mut g, &format!("{p}.dw.shift"), shift)?;
        (x, side) = conv_relu6(&mut g, &format!("{p}.dw"), &x, (&w, &b), 3, stride, cin, side);
        let w = add(&mut g, &format!("{p}.pw.weight"), pw)?;
        let b = add(&mut g, &format!("{p}.pw.bias"), pw_bias)?;
        (x, _) = conv_relu6(&mut g, &format!("{p}.pw"), &x, (&w, &b), 1, 1, 1, side);
    }
    let pooled = g.node("GlobalAveragePool", "global_pool", &[&x], vec![]);
    let features = g.node("Flatten", FEATURES, &[&pooled], vec![("axis", Attr::Int(1))]);

    let h = match &head.hidden {
        Some(hidden) => {
            let h = dense(&mut g, "head.hidden", &features, hidden)?;
            g.node("Relu", "head.hidden.relu", &[&h], vec![])
        }
        None => features.clone(),
    };
    let logits = dense(&mut g, LOGITS, &h, &head.out)?;
    g.node("Softmax", PROBS, &[&logits], vec![("axis", Attr::Int(1))]);

    let classes_text = classes.join(", ");
    let k = classes.len() as i64;
    let outputs = [
        (PROBS, k, format!("probability per class, in this order: {classes_text}")),
        (LOGITS, k, format!("the head's scores before softmax, in this order: {classes_text}")),
        (FEATURES, FEATURE_DIM as i64, "faceres' pooled 1024-d face features".to_string()),
    ];
    for (name, width, doc) in outputs {
        g.outputs.push(ValueInfo { name: name.into(), elem_type: FLOAT, dims: vec![n(), Dim::Fixed(width)], doc });
    }
    g.check().map_err(|why| candle_core::Error::Msg(format!("the ONNX graph is inconsistent: {why}")))?;
    Ok(g)
}
