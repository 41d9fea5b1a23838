//! Export of a whole classifier (faceres + the model's head + softmax) as an ONNX file, for use
//! outside this program (docs/EXPORT.md).
//!
//! The file is written by hand: [`protobuf`] encodes the wire format, [`onnx_graph`] the ONNX
//! messages, and `classifier` lays out the network from the same weights Candle runs. Face
//! detection and cropping are not in the graph; its input is the face crop, resized.
//! Only faceres models can be exported: Inception-v3 export is not implemented.

mod classifier;
pub mod onnx_graph;
pub mod protobuf;

use std::path::{Path, PathBuf};

use candle_core::Device;
use gc_engine::BackboneKind;
use gc_engine::weights::{self, FACERES};

use crate::context::Context;
use crate::error::{IoContext, Result, invalid};
use crate::model_file::{Model, read_meta};

/// Name of the graph's input.
pub const INPUT: &str = "image";
/// Name of the output holding the class probabilities, `[N, classes]`.
pub const PROBS: &str = "probs";
/// Name of the output holding the head's logits, `[N, classes]`.
pub const LOGITS: &str = "logits";
/// Name of the output holding faceres' pooled features, `[N, 1024]`.
pub const FEATURES: &str = "features";

/// The ONNX operator set the graph follows (ONNX 1.8, 2020).
pub const OPSET: i64 = 13;
/// The ONNX IR version of the file (the one that came with [`OPSET`]).
pub const IR_VERSION: i64 = 7;

/// What the graph's input holds, in one line (also written into the file).
pub const INPUT_DESCRIPTION: &str = "image: float32 [N, 3, 224, 224], NCHW, channels in R, G, B order, \
     pixel values 0..255 (not scaled, not mean-subtracted): the face crop resized to 224x224 \
     (docs/EXPORT.md); the graph subtracts faceres' means and reorders the channels itself";

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The ONNX file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// The classes of the `probs` output, in order.
    pub classes: Vec<String>,
    /// Whether the model was trained on face crops (else on whole photos resized).
    pub face_crop: bool,
    /// The preprocessing the model was trained with (crop mode, face-crop rule, flips).
    pub spec: crate::preprocess::PreprocessSpec,
}

impl Exported {
    /// The input contract in a few lines, for people: layout, scaling, what to crop.
    pub fn input_description(&self) -> String {
        use crate::face::{ALIGN_DROP, ALIGN_SIDE, FACE_CROP_COVER};
        use crate::preprocess::CropMode;
        let mut crop = match (self.face_crop, self.spec.crop()) {
            (false, _) | (_, CropMode::Whole) => {
                "crop: none; this model was trained on whole photos, resized bilinearly (aspect not kept)".to_string()
            }
            (true, CropMode::Box) => {
                "crop: a square around the detected face (1.3x the detector's box), resized bilinearly".to_string()
            }
            (true, CropMode::Aligned) => format!(
                "crop: an eye-aligned square: turned so the eyes (BlazeFace keypoints 0 and 1) are level, side \
                 {ALIGN_SIDE}x the eye distance, centred {ALIGN_DROP}x the eye distance below their midpoint, \
                 resized bilinearly"
            ),
        };
        if self.face_crop && self.spec.keep_face_crops {
            crop +=
                &format!("; a photo whose face box covers {:.0}% or more of it is used whole", FACE_CROP_COVER * 100.0);
        }
        if self.spec.tta_flip {
            crop += "; used with flip averaging: run the crop and its mirror image and average their logits";
        }
        format!(
            "input '{INPUT}': float32 [N, 3, 224, 224], NCHW, RGB, values 0..255 (no scaling, no mean subtraction)\n\
             {crop} (see docs/EXPORT.md)\n\
             outputs: '{PROBS}' [N, {k}] probabilities of {classes}; '{LOGITS}' [N, {k}]; '{FEATURES}' [N, 1024]",
            k = self.classes.len(),
            classes = self.classes.join(", "),
        )
    }
}

/// Writes the model at `model` (a faceres model), with the faceres weights of `ctx`, as one ONNX
/// file at `out`, atomically ([`crate::durable::write_atomic`]); creates `out`'s folder if needed.
///
/// Refuses a model of another backbone (Inception-v3 export is not implemented) before reading
/// any weights. The weights are read on the CPU whatever `ctx.device` is.
pub fn export_onnx(ctx: &Context, model: &Path, out: &Path) -> Result<Exported> {
    let (meta, _) = read_meta(model)?;
    if meta.preprocess.backbone != BackboneKind::Faceres {
        invalid!(
            "cannot export model {} to ONNX: it is built on the {} backbone, and only faceres models \
             can be exported (Inception-v3 export is not implemented); train a model with \
             `--backbone faceres` and export that one",
            model.display(),
            meta.preprocess.backbone
        );
    }
    let model_data = Model::load(model, &Device::Cpu)?;
    let faceres_path = ctx.weights(&FACERES);
    let mut vb = weights::load_checked(&faceres_path, &FACERES, &Device::Cpu)?;
    if let Some(tuned) = &model_data.tuned {
        // A fine-tuned model's blocks replace the shipped ones in the graph, as in prediction.
        let base =
            weights::with_file_context(candle_core::safetensors::load(&faceres_path, &Device::Cpu), &faceres_path)?;
        vb = gc_engine::faceres_train::with_overrides(base, &tuned.tensors, &Device::Cpu);
    }
    let faceres = weights::with_file_context(classifier::FaceresWeights::from_vb(&vb), &faceres_path)?;
    let meta = &model_data.meta;
    let doc = format!(
        "gender-classifier model '{}' ({}): faceres + head + softmax. {INPUT_DESCRIPTION}. Outputs: \
         '{PROBS}' probabilities of {}; '{LOGITS}'; '{FEATURES}'.",
        model.display(),
        meta.origin,
        meta.classes.join(", ")
    );
    let graph = classifier::build(&faceres, &model_data.head, &meta.classes, &doc)?;
    let onnx = onnx_graph::Model {
        ir_version: IR_VERSION,
        opset: OPSET,
        producer_name: "gender-classifier".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc,
        metadata: vec![
            ("classes".into(), serde_json::to_string(&meta.classes)?),
            ("input".into(), INPUT_DESCRIPTION.into()),
            ("face_crop".into(), meta.preprocess.face_crop.to_string()),
            ("preprocess".into(), meta.preprocess.id()),
            ("backbone_sha256".into(), meta.backbone_sha256.clone()),
            ("origin".into(), meta.origin.clone()),
            ("created".into(), meta.created.clone()),
        ],
        graph,
    };
    let bytes = onnx.to_bytes();
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).io(|| format!("cannot create folder {} for the ONNX file", dir.display()))?;
    }
    crate::durable::write_atomic(out, &bytes, "onnx").io(|| {
        format!("cannot write ONNX file {}: check that its folder is writable and the disk has room", out.display())
    })?;
    tracing::info!(path = %out.display(), bytes = bytes.len(), model = %model.display(), "ONNX model written");
    Ok(Exported {
        path: out.to_path_buf(),
        bytes: bytes.len(),
        classes: meta.classes.clone(),
        face_crop: meta.preprocess.face_crop,
        spec: meta.preprocess,
    })
}
