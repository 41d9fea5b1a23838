//! A minimal protocol-buffers writer: varints, fixed32 floats, length-delimited fields and nested
//! messages, enough to write ONNX's messages by hand (no code generator, no dependency).
//!
//! The wire format (<https://protobuf.dev/programming-guides/encoding/>): every field is a key,
//! `(field number << 3) | wire type`, as a varint, then its value. Varints hold integers 7 bits a
//! byte, least significant first, with the high bit set on every byte but the last; negative
//! `int64`s take all ten bytes (two's complement). Length-delimited values (strings, bytes, nested
//! messages, packed repeated scalars) are a varint byte count followed by the bytes.

/// Wire type of varint-encoded integers (`int32`, `int64`, `bool`, enums).
const VARINT: u32 = 0;
/// Wire type of strings, bytes, nested messages and packed repeated fields.
const LEN: u32 = 2;
/// Wire type of `float` (four little-endian bytes).
const FIXED32: u32 = 5;

/// The bytes of one message being written, field after field.
#[derive(Debug, Default, Clone)]
pub struct Message {
    buf: Vec<u8>,
}

/// Appends `v` to `buf` as a varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Length of the encoded bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no field has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn key(&mut self, field: u32, wire: u32) {
        put_varint(&mut self.buf, u64::from(field << 3 | wire));
    }

    /// An `int64` field (negative values take ten bytes, as protobuf requires).
    pub fn int64(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, VARINT);
        put_varint(&mut self.buf, v as u64);
        self
    }

    /// An `int32` or enum field (negative values are sign-extended to 64 bits).
    pub fn int32(&mut self, field: u32, v: i32) -> &mut Self {
        self.int64(field, i64::from(v))
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// A nested message field.
    pub fn message(&mut self, field: u32, m: &Message) -> &mut Self {
        self.bytes(field, &m.buf)
    }

    /// A repeated `int64` field, packed (one length-delimited run of varints).
    pub fn packed_int64(&mut self, field: u32, vs: &[i64]) -> &mut Self {
        let mut run = Vec::with_capacity(vs.len());
        vs.iter().for_each(|&v| put_varint(&mut run, v as u64));
        self.bytes(field, &run)
    }

    /// A repeated `float` field, packed (one length-delimited run of little-endian floats).
    pub fn packed_float(&mut self, field: u32, vs: &[f32]) -> &mut Self {
        let run: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        b
    }

    #[test]
    fn export_varints_match_the_protobuf_spec() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(150), [0x96, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    /// The bytes of a message written by `f`.
    fn enc(f: impl FnOnce(&mut Message) -> &mut Message) -> Vec<u8> {
        let mut m = Message::new();
        f(&mut m);
        m.into_bytes()
    }

    #[test]
    fn export_fields_match_the_protobuf_spec() {
        // The spec's examples: field 1 = 150 is 08 96 01; field 2 = "testing" is 12 07 74 65 73 74 69 6e 67.
        assert_eq!(enc(|m| m.int64(1, 150)), [0x08, 0x96, 0x01]);
        assert_eq!(enc(|m| m.string(2, "testing")), b"\x12\x07testing");
        // A nested message: field 3 holding the first message.
        let mut inner = Message::new();
        inner.int64(1, 150);
        assert_eq!(enc(|m| m.message(3, &inner)), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        // Packed repeated field 4 = [3, 270, 86942]: 22 06 03 8E 02 9E A7 05.
        assert_eq!(enc(|m| m.packed_int64(4, &[3, 270, 86942])), [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);
        // -1 as int64 or int32 takes ten bytes after the key; a float is fixed32, little-endian.
        assert_eq!(enc(|m| m.int64(1, -1)).len(), 11);
        assert_eq!(enc(|m| m.int32(1, -1)).len(), 11);
        assert_eq!(enc(|m| m.float(2, 1.0)), [0x15, 0x00, 0x00, 0x80, 0x3f]);
        let floats = [0x3a, 0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0];
        assert_eq!(enc(|m| m.packed_float(7, &[1.0, -2.0])), floats);
        // A field number past 15 needs a two-byte key; fields follow each other in call order.
        assert_eq!(enc(|m| m.int64(20, 1).int64(1, 2)), [0xa0, 0x01, 0x01, 0x08, 0x02]);
        assert!(Message::new().is_empty());
    }
}
