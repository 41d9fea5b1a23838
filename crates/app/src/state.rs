//! Settings that persist across restarts (eframe storage): recent folders, the current model,
//! grid and filter choices, and the training settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use gc_core::dataset::split::SplitSpec;
use gc_core::train::TrainOptions;
use gc_core::train::run::TrainConfig;
use gc_engine::BackboneKind;

/// Key under which [`Settings`] are stored by eframe.
pub const SETTINGS_KEY: &str = "gender-classifier/settings";

/// How many recent folders are remembered.
pub const MAX_RECENT: usize = 8;

/// Order of the photo grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SortOrder {
    /// By class, then file name.
    #[default]
    Name,
    /// Least confident prediction first.
    ConfidenceAsc,
    /// Most confident prediction first.
    ConfidenceDesc,
    /// Highest loss (most suspicious label) first.
    Loss,
}

impl SortOrder {
    /// Every order, in menu order.
    pub const ALL: [SortOrder; 4] =
        [SortOrder::Name, SortOrder::Loss, SortOrder::ConfidenceAsc, SortOrder::ConfidenceDesc];

    /// Label for menus.
    pub fn label(self) -> &'static str {
        match self {
            SortOrder::Name => "Name",
            SortOrder::ConfidenceAsc => "Confidence (low first)",
            SortOrder::ConfidenceDesc => "Confidence (high first)",
            SortOrder::Loss => "Loss (most suspicious first)",
        }
    }
}

/// Which split the evaluation views and the split filter look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SplitFilter {
    /// Every image.
    #[default]
    All,
    /// Only training images.
    Train,
    /// Only validation images.
    Validation,
    /// Only held-out test images.
    Test,
}

impl SplitFilter {
    /// Every choice, in menu order.
    pub const ALL: [SplitFilter; 4] =
        [SplitFilter::All, SplitFilter::Test, SplitFilter::Validation, SplitFilter::Train];

    /// Label for menus.
    pub fn label(self) -> &'static str {
        match self {
            SplitFilter::All => "All splits",
            SplitFilter::Train => "Train split",
            SplitFilter::Validation => "Validation split",
            SplitFilter::Test => "Test split",
        }
    }

    /// True when an image of split `s` (None = not known yet) passes.
    pub fn accepts(self, s: Option<gc_core::dataset::split::Split>) -> bool {
        use gc_core::dataset::split::Split;
        match self {
            SplitFilter::All => true,
            SplitFilter::Train => s == Some(Split::Train),
            SplitFilter::Validation => s == Some(Split::Validation),
            SplitFilter::Test => s == Some(Split::Test),
        }
    }
}

/// Which face-count condition an image must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FaceFilter {
    /// Any number of faces.
    #[default]
    Any,
    /// The detector found no face (the whole image was used).
    NoFace,
    /// Exactly one face.
    OneFace,
    /// Two or more faces (group photo: the label may be about someone else).
    SeveralFaces,
}

impl FaceFilter {
    /// Every choice, in menu order.
    pub const ALL: [FaceFilter; 4] =
        [FaceFilter::Any, FaceFilter::NoFace, FaceFilter::OneFace, FaceFilter::SeveralFaces];

    /// Label for menus.
    pub fn label(self) -> &'static str {
        match self {
            FaceFilter::Any => "Any number of faces",
            FaceFilter::NoFace => "No face found",
            FaceFilter::OneFace => "Exactly one face",
            FaceFilter::SeveralFaces => "Several faces",
        }
    }
}

/// What the photo grid shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filters {
    /// Only this true class (folder), by name.
    pub class: Option<String>,
    /// Only this predicted class, by name.
    pub predicted: Option<String>,
    /// Only wrongly predicted images.
    pub wrong_only: bool,
    /// Only images without a prediction yet.
    pub unpredicted_only: bool,
    /// Confidence (probability of the predicted class) range, inclusive.
    pub confidence: (f32, f32),
    /// Face count condition.
    pub faces: FaceFilter,
    /// Split condition.
    pub split: SplitFilter,
    /// Case-insensitive part of the file name.
    pub name_contains: String,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            class: None,
            predicted: None,
            wrong_only: false,
            unpredicted_only: false,
            confidence: (0.0, 1.0),
            faces: FaceFilter::Any,
            split: SplitFilter::All,
            name_contains: String::new(),
        }
    }
}

impl Filters {
    /// True when nothing is filtered out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Training settings as edited in the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// Feature backbone.
    pub backbone: BackboneKind,
    /// Detect and crop faces first.
    pub face_crop: bool,
    /// Head options (learning rate, epochs, ...).
    pub options: TrainOptions,
    /// Validation and test percentages.
    pub split: SplitSpec,
    /// Images per backbone forward pass.
    pub extract_batch: usize,
    /// Cap per class (0 = all images).
    pub max_per_class: usize,
    /// Fine-tune faceres' last blocks too (slower, more accurate) rather than train the head only.
    pub fine_tune: bool,
    /// Fine-tuning options (used when `fine_tune` is on).
    pub fine_tune_options: gc_core::recipe::FineTuneOptions,
}

impl Default for TrainSettings {
    fn default() -> Self {
        let cfg = TrainConfig::default();
        Self {
            backbone: cfg.backbone,
            face_crop: cfg.face_crop,
            options: cfg.options,
            split: cfg.split,
            extract_batch: cfg.extract_batch,
            max_per_class: 0,
            fine_tune: false,
            fine_tune_options: Default::default(),
        }
    }
}

impl TrainSettings {
    /// The library's training configuration for these settings.
    pub fn to_config(&self) -> TrainConfig {
        TrainConfig {
            backbone: self.backbone,
            face_crop: self.face_crop,
            crops: Default::default(),
            options: self.options.clone(),
            split: self.split,
            extract_batch: self.extract_batch.max(1),
            max_per_class: (self.max_per_class > 0).then_some(self.max_per_class),
            fine_tune: self.fine_tune.then(|| self.fine_tune_options.clone()),
        }
    }
}

/// Everything remembered between runs of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Recently opened dataset folders, most recent first.
    pub recent: Vec<PathBuf>,
    /// The model chosen last (a `.safetensors` path).
    pub model: Option<PathBuf>,
    /// Thumbnail side in points.
    pub thumb_size: f32,
    /// Grid filters.
    pub filters: Filters,
    /// Grid order.
    pub sort: SortOrder,
    /// Split the evaluation views look at.
    pub eval_split: SplitFilter,
    /// Training settings.
    pub train: TrainSettings,
    /// Show the right-hand panel.
    pub show_right_panel: bool,
    /// Dark mode (false = light).
    pub dark_mode: bool,
    /// Classified photos whose top probability is below this are shown as "uncertain" (0 = never).
    pub uncertain_below: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            recent: Vec::new(),
            model: None,
            thumb_size: 112.0,
            filters: Filters::default(),
            sort: SortOrder::Name,
            eval_split: SplitFilter::All,
            train: TrainSettings::default(),
            show_right_panel: true,
            dark_mode: true,
            uncertain_below: gc_core::calibration::DEFAULT_UNCERTAIN_BELOW,
        }
    }
}

impl Settings {
    /// Puts `dir` first in the recent list (no duplicates, at most [`MAX_RECENT`]).
    pub fn remember_folder(&mut self, dir: &Path) {
        self.recent.retain(|d| d != dir);
        self.recent.insert(0, dir.to_path_buf());
        self.recent.truncate(MAX_RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_folders_are_unique_most_recent_first_and_bounded() {
        let mut s = Settings::default();
        for i in 0..20 {
            s.remember_folder(Path::new(&format!("/d{i}")));
        }
        s.remember_folder(Path::new("/d5"));
        assert_eq!(s.recent.len(), MAX_RECENT);
        assert_eq!(s.recent[0], PathBuf::from("/d5"));
        assert_eq!(s.recent.iter().filter(|d| d.as_path() == Path::new("/d5")).count(), 1);
    }

    #[test]
    fn settings_round_trip_and_tolerate_missing_fields() {
        let mut s = Settings::default();
        s.filters.wrong_only = true;
        s.train.options.epochs = 7;
        let text = serde_json::to_string(&s).unwrap();
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        let partial: Settings = serde_json::from_str(r#"{"thumb_size": 90.0}"#).unwrap();
        assert_eq!(partial.thumb_size, 90.0);
        assert_eq!(partial.train, TrainSettings::default());
        assert_eq!(partial.uncertain_below, gc_core::calibration::DEFAULT_UNCERTAIN_BELOW, "older settings read");
    }
}
