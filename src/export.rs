//! `export --onnx OUT.onnx [--model M]`: the whole classifier as one ONNX file, for use outside
//! this program (docs/EXPORT.md). The work is `gc_core::export::export_onnx`.

use std::path::PathBuf;

use clap::Args;
use gc_core::context::Context;

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the ONNX file: faceres, the model's head and softmax in one graph.
    #[arg(long, value_name = "OUT.onnx")]
    pub onnx: PathBuf,
    /// Model to export (default: the shipped default model); faceres models only.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Writes the model as ONNX and says on stderr where it went and what its input is.
pub fn run(ctx: &Context, args: &ExportArgs) -> anyhow::Result<()> {
    let model = args.model.clone().unwrap_or_else(|| ctx.default_model());
    let exported = gc_core::export::export_onnx(ctx, &model, &args.onnx)?;
    eprintln!(
        "ONNX model written to {} ({:.1} MB), from {}",
        exported.path.display(),
        exported.bytes as f64 / 1e6,
        model.display()
    );
    eprintln!("{}", exported.input_description());
    Ok(())
}
