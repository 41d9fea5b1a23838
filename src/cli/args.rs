//! The command line as clap parses it: the global options, the subcommands and their arguments,
//! the closed sets of values (`--device`, `--backbone`, `--split`) and the exit codes in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use gc_core::dataset::split::{Split, SplitSpec};
use gc_core::eval::EvalScope;
use gc_core::preprocess::{CropMode, CropOverrides};
use gc_core::recipe::FineTuneOptions;
use gc_core::train::TrainOptions;
use gc_engine::BackboneKind;

/// The exit codes, as `--help` shows them after the options.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    failure (the message on stderr says what to do)
  2    usage error: an unknown option or a value not among the choices
  130  cancelled by Ctrl-C; what was printed so far stays valid (whole CSV rows and JSON lines)";

/// Tells whether the person in a photo is a man or a woman; builds, cleans and retrains the dataset.
#[derive(Debug, Parser)]
#[command(name = "gender-classifier", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Compute device; auto picks the fastest one present (GPU ones need the matching cargo feature).
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Cache folder, holding `features/` and `thumbs/` (default: $GENDER_CLASSIFIER_CACHE, else the user cache dir).
    #[arg(long, global = true)]
    pub cache: Option<PathBuf>,
    /// Folder with the shipped weights and default model (default: $GENDER_CLASSIFIER_MODELS, ./models, else the build's models/).
    #[arg(long, global = true)]
    pub models: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do; without one, the desktop app opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The compute device of `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The fastest device present: a CUDA GPU, else a Metal GPU, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (a build with `--features cuda`).
    Cuda,
    /// The Metal GPU (a build with `--features metal`).
    Metal,
}

impl DeviceArg {
    /// The name `gc_engine::device::select` takes.
    pub fn name(self) -> &'static str {
        match self {
            DeviceArg::Auto => "auto",
            DeviceArg::Cpu => "cpu",
            DeviceArg::Cuda => "cuda",
            DeviceArg::Metal => "metal",
        }
    }
}

/// A backbone as the command line names it (gc-engine's `BackboneKind` knows nothing of clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackboneArg {
    /// Face-specific MobileNetV1 (1024-d features), the default.
    Faceres,
    /// Inception-v3 (2048-d features).
    InceptionV3,
}

impl From<BackboneArg> for BackboneKind {
    fn from(b: BackboneArg) -> Self {
        match b {
            BackboneArg::Faceres => BackboneKind::Faceres,
            BackboneArg::InceptionV3 => BackboneKind::InceptionV3,
        }
    }
}

/// The images `eval --split` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// Every image in the folder.
    All,
    /// The training split of the model's split rule.
    Train,
    /// The validation split.
    Validation,
    /// The held-out test split.
    Test,
}

impl From<SplitArg> for EvalScope {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::All => EvalScope::All,
            SplitArg::Train => EvalScope::Only(Split::Train),
            SplitArg::Validation => EvalScope::Only(Split::Validation),
            SplitArg::Test => EvalScope::Only(Split::Test),
        }
    }
}

/// The part of each photo the model sees (`--crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CropArg {
    /// The whole photo.
    Whole,
    /// A square around the detected face's box.
    Box,
    /// A square turned so the eyes are level, sized on the eye distance.
    Aligned,
}

impl From<CropArg> for CropMode {
    fn from(c: CropArg) -> Self {
        match c {
            CropArg::Whole => CropMode::Whole,
            CropArg::Box => CropMode::Box,
            CropArg::Aligned => CropMode::Aligned,
        }
    }
}

/// Test-time augmentation (`--tta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TtaArg {
    /// Average the photo and its mirror image.
    Flip,
    /// The photo only.
    None,
}

/// What happens to a photo that a face already fills (`--already-cropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlreadyCroppedArg {
    /// Crop it again like any photo.
    Crop,
    /// Use it whole.
    Keep,
}

/// The crop and test-time augmentation options of `train`, `eval` and `classify`.
#[derive(Debug, Clone, Args)]
pub struct CropArgs {
    /// Part of each photo the model sees: whole, a box around the face, or a crop aligned on the eyes.
    #[arg(long, value_enum)]
    pub crop: Option<CropArg>,
    /// Same as --crop whole.
    #[arg(long, conflicts_with = "crop")]
    pub no_face_crop: bool,
    /// A photo that the detected face already fills: crop it again, or keep it whole.
    #[arg(long, value_enum)]
    pub already_cropped: Option<AlreadyCroppedArg>,
    /// Test-time augmentation: flip averages each photo with its mirror image (twice the backbone work).
    #[arg(long, value_enum)]
    pub tta: Option<TtaArg>,
}

impl CropArgs {
    /// The choices given, as overrides of a model's (or the training default's) own.
    pub fn overrides(&self) -> CropOverrides {
        CropOverrides {
            crop: if self.no_face_crop { Some(CropMode::Whole) } else { self.crop.map(Into::into) },
            keep_face_crops: self.already_cropped.map(|k| k == AlreadyCroppedArg::Keep),
            tta_flip: self.tta.map(|t| t == TtaArg::Flip),
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a new head on a dataset folder (one sub-folder per class), or on several at once.
    ///
    /// With several folders, each is split on its own (as `eval DIR` splits it) and, unless
    /// --no-balance, each class of each folder weighs equally in the loss.
    ///
    /// The new model and the model it would replace (--baseline, else the model at --out, else the
    /// shipped default) are scored on the same photos, the new model's validation split, and both
    /// accuracies are printed. A worse new model is reported on stderr and still written, except
    /// over a better model at --out: then nothing is written unless --force is given. A model card,
    /// X.md, is written beside X.safetensors.
    #[command(after_help = EXIT_CODES)]
    Train(TrainArgs),
    /// Evaluate a model on a dataset folder.
    #[command(after_help = EXIT_CODES)]
    Eval(EvalArgs),
    /// Classify photos (files or folders, searched recursively).
    #[command(after_help = EXIT_CODES)]
    Classify(ClassifyArgs),
    /// List face detections as JSON.
    #[command(after_help = EXIT_CODES)]
    Faces(FacesArgs),
    /// Find duplicates, likely wrong labels, faceless, tiny and outlying images in a dataset folder.
    #[command(after_help = EXIT_CODES)]
    Audit(AuditArgs),
    /// Measure extraction and training speed.
    #[command(after_help = EXIT_CODES)]
    Bench(crate::bench::BenchArgs),
    /// Write faceres' own (zero-shot) gender head as a model file.
    ZeroShot {
        /// Where to write the model: one `.safetensors` file holding the weights and their description.
        #[arg(long, short, default_value = "zero-shot.safetensors")]
        out: PathBuf,
        /// Classify whole images instead of face crops.
        #[arg(long)]
        no_face_crop: bool,
    },
    /// Write a model, with faceres and softmax, as one ONNX file to run elsewhere (docs/EXPORT.md).
    #[command(after_help = EXIT_CODES)]
    Export(crate::export::ExportArgs),
    /// Open the desktop app, optionally on a dataset folder and photos, as a file manager's "Open with" does.
    App {
        /// A dataset folder to open (one sub-folder per class) and/or photos to classify.
        #[arg(value_name = "FOLDER_OR_PHOTO")]
        paths: Vec<PathBuf>,
        /// Model to load instead of the last one used (or the shipped default).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

/// `train` arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folders, each with one sub-folder per class (the same classes in all); several train one model on all of them.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Backbone that turns a photo into features.
    #[arg(long, value_enum, default_value_t = BackboneArg::Faceres)]
    pub backbone: BackboneArg,
    /// Where to write the model: one `.safetensors` file holding the weights and their description.
    #[arg(long, short, default_value = "model.safetensors")]
    pub out: PathBuf,
    /// Crop mode, face-crop rule and flips of the new model.
    #[command(flatten)]
    pub crops: CropArgs,
    /// Learning rate.
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub lr: f64,
    /// Maximum epochs.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    pub batch_size: usize,
    /// L2 penalty.
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    pub l2: f64,
    /// Dropout on the bottleneck.
    #[arg(long, default_value_t = TrainOptions::default().dropout)]
    pub dropout: f32,
    /// Do not re-weight the loss so each class (of each dataset folder, with several) counts equally.
    #[arg(long)]
    pub no_balance: bool,
    /// Early-stopping patience in epochs (0 = off).
    #[arg(long, default_value_t = TrainOptions::default().patience)]
    pub patience: usize,
    /// Random seed.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    /// Start from faceres' own gender head (faceres only).
    #[arg(long)]
    pub warm_start: bool,
    /// Percent of images for validation.
    #[arg(long, default_value_t = SplitSpec::default().validation_pct)]
    pub validation_pct: f64,
    /// Percent of images for the test split.
    #[arg(long, default_value_t = SplitSpec::default().test_pct)]
    pub test_pct: f64,
    /// Use at most this many images per class.
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Images per backbone forward pass.
    #[arg(long, default_value_t = 16)]
    pub extract_batch: usize,
    /// Model to compare the new one with on the same validation photos (default: the model at --out if any, else the shipped default).
    #[arg(long, value_name = "MODEL")]
    pub baseline: Option<PathBuf>,
    /// Overwrite the model at --out even when it scores better than the new one on the same validation photos.
    #[arg(long)]
    pub force: bool,
    /// Fine-tune faceres' last blocks with the head (slower, more accurate; see docs/ACCURACY.md).
    #[arg(long)]
    pub fine_tune: bool,
    /// How many of faceres' last blocks to fine-tune (1-13).
    #[arg(long, value_name = "N", default_value_t = FineTuneOptions::default().blocks, requires = "fine_tune")]
    pub fine_tune_blocks: usize,
    /// Epochs of fine-tuning (early stopping on the validation loss).
    #[arg(long, value_name = "N", default_value_t = FineTuneOptions::default().epochs, requires = "fine_tune")]
    pub fine_tune_epochs: usize,
    /// Learning rate of the head while fine-tuning.
    #[arg(long, value_name = "LR", default_value_t = FineTuneOptions::default().head_lr, requires = "fine_tune")]
    pub fine_tune_lr: f64,
    /// Learning rate of the fine-tuned blocks (lower than the head's).
    #[arg(long, value_name = "LR", default_value_t = FineTuneOptions::default().backbone_lr, requires = "fine_tune")]
    pub backbone_lr: f64,
    /// Jittered copies (scale, shift, brightness, contrast, flip) of each training photo, besides its mirror image.
    #[arg(long, value_name = "N", default_value_t = FineTuneOptions::default().jitter_copies, requires = "fine_tune")]
    pub jitter_copies: usize,
}

/// `eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset folder with one sub-folder per class.
    pub dir: PathBuf,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Which images (default: test if DIR is the model's training folder, else all).
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Crop mode, face-crop rule and flips (default: the model's own).
    #[command(flatten)]
    pub crops: CropArgs,
    /// Print JSON: the metrics, the misclassified images and the skipped files.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV: one row per scored image (path, split, label, predicted, correct, faces, p_<class>..., then the group columns).
    #[arg(long)]
    pub csv: bool,
    /// Accuracy by group: `utkface` (age band, gender and race from UTKFace file names) or a CSV file `path,<column>,...`.
    #[arg(long, value_name = "utkface|FILE.csv")]
    pub groups: Option<PathBuf>,
    /// Count answers whose top probability is below P as uncertain (0 to 1; default: the model's calibrated threshold, else 0.75).
    #[arg(long, value_name = "P")]
    pub uncertain_below: Option<f32>,
}

/// `classify` arguments.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Image files or folders.
    #[arg(required_unless_present = "files_from")]
    pub paths: Vec<PathBuf>,
    /// Also classify the files and folders listed in LIST, one path per line (`-`: read stdin).
    #[arg(long, value_name = "LIST")]
    pub files_from: Option<PathBuf>,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Crop mode, face-crop rule and flips (default: the model's own).
    #[command(flatten)]
    pub crops: CropArgs,
    /// Print one JSON document at the end.
    #[arg(long, conflicts_with_all = ["csv", "jsonl"])]
    pub json: bool,
    /// Print one JSON object per line and photo, each written as soon as the photo is done.
    #[arg(long, conflicts_with = "csv")]
    pub jsonl: bool,
    /// Print CSV: one row per face, written as each photo is done.
    #[arg(long)]
    pub csv: bool,
    /// Call an answer "uncertain" when its top probability is below P (0 to 1; 0 = never; default: the model's calibrated threshold, else 0.75).
    #[arg(long, value_name = "P")]
    pub uncertain_below: Option<f32>,
}

/// `audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Dataset folder with one sub-folder per class.
    pub dir: PathBuf,
    /// Backbone whose features are compared.
    #[arg(long, value_enum, default_value_t = BackboneArg::Faceres)]
    pub backbone: BackboneArg,
    /// Use whole images instead of face crops.
    #[arg(long)]
    pub no_face_crop: bool,
    /// Folds of the out-of-fold training that ranks likely wrong labels.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Show findings the user already kept in the app's review.
    #[arg(long)]
    pub include_kept: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV: one row per image of each finding (finding, kind, score, path, class, suggested, reason).
    #[arg(long)]
    pub csv: bool,
}

/// `faces` arguments.
#[derive(Debug, Args)]
pub struct FacesArgs {
    /// Image files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, ValueEnum as _};

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_its_choices_match_the_libraries() {
        Cli::command().debug_assert();
        for d in DeviceArg::value_variants() {
            let name = d.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(d.name(), name);
        }
        for b in BackboneArg::value_variants() {
            let name = b.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(BackboneKind::from(*b).id(), name, "the CLI name is the backbone's id");
        }
        for s in SplitArg::value_variants() {
            let name = s.to_possible_value().unwrap().get_name().to_owned();
            match EvalScope::from(*s) {
                EvalScope::All => assert_eq!(name, "all"),
                EvalScope::Only(split) => assert_eq!(split.name(), name),
            }
        }
    }
}
