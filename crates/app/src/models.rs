//! Models as the app holds them: the list found on disk, the loaded classifier, and the tasks that
//! list, load, make (zero-shot) and run one over the open dataset.

use std::path::PathBuf;
use std::sync::Arc;

use gc_core::classify::Classifier;
use gc_core::features::extract::Progress;

use crate::tasks::{ModelInfo, Outcome, Predictions, Task};

/// A prediction pass over the dataset: its predictions and how long it took.
pub type EvalTask = Task<Progress, Outcome<(Predictions, f64)>>;

/// The models on disk, the current one, and their background work.
pub struct ModelsState {
    /// Models found on disk.
    pub list: Vec<ModelInfo>,
    /// The loaded model.
    pub classifier: Option<Arc<Classifier>>,
    /// Path of the loaded (or loading) model.
    pub path: Option<PathBuf>,
    /// Why the model could not be loaded.
    pub error: Option<String>,
    /// Changes whenever the current model changes (views key their caches on it).
    pub key: usize,
    /// Load a model on start and when a dataset opens (tests turn this off to inject predictions).
    pub auto_load: bool,
    /// Progress of the running prediction pass.
    pub eval_progress: Option<Progress>,
    /// Listing the models on disk.
    pub list_task: Option<Task<(), Vec<ModelInfo>>>,
    /// Loading the chosen model.
    pub load_task: Option<Task<(), Outcome<Arc<Classifier>>>>,
    /// Writing faceres' zero-shot head as a model.
    pub zero_shot_task: Option<Task<(), Outcome<PathBuf>>>,
    /// Predicting the open dataset.
    pub eval: Option<EvalTask>,
}

impl Default for ModelsState {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            classifier: None,
            path: None,
            error: None,
            key: 0,
            auto_load: true,
            eval_progress: None,
            list_task: None,
            load_task: None,
            zero_shot_task: None,
            eval: None,
        }
    }
}

impl ModelsState {
    /// True while any of the models' tasks runs.
    pub fn is_busy(&self) -> bool {
        self.list_task.is_some() || self.load_task.is_some() || self.zero_shot_task.is_some() || self.eval.is_some()
    }
}
