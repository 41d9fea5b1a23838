//! Trained models on disk: they live in the user's data folder ([`Context::trained_models_dir`]),
//! not in a photo folder. Here: moving them out of a dataset's old `.gender-classifier/models`,
//! listing, renaming, exporting, and sending one to the system trash.
//!
//! Every function here touches the disk: the app calls them on its background runtime only. None
//! ever overwrites or removes a model except [`delete_model`], which hands it to the trash.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use gc_core::context::Context;
use gc_core::dataset::no_replace::rename_no_replace;
use gc_core::model_file::{MetaSource, Model, ModelMeta};

use crate::tasks::{Failure, Outcome};

/// The extension of a model file.
pub const MODEL_EXT: &str = "safetensors";

/// Files that travel with a model under the same stem: its old-form metadata and its model card.
pub const COMPANIONS: [&str; 2] = ["json", "md"];

/// The longest model card the list reads (bytes); a longer one is cut with a note.
const MAX_CARD: u64 = 64 * 1024;

/// Where older versions of the app saved the models trained on a dataset (moved out on opening).
pub fn legacy_models_dir(root: &Path) -> PathBuf {
    gc_core::context::state_dir(root).join("models")
}

/// One model found on disk.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Its `.safetensors` path.
    pub path: PathBuf,
    /// Its metadata, or why it cannot be read.
    pub meta: Outcome<ModelMeta>,
    /// True for the model shipped with the app.
    pub shipped: bool,
    /// The model card (the `.md` beside it), when there is one.
    pub card: Option<String>,
    /// True when it was trained on the dataset open when it was listed.
    pub trained_here: bool,
}

impl ModelInfo {
    /// Reads the metadata and the card of the model at `path`.
    pub fn read(path: PathBuf, shipped: bool) -> Self {
        let meta = gc_core::model_file::read_meta(&path).map(|(m, _)| m).map_err(Failure::from);
        let card = read_card(&path);
        Self { path, meta, shipped, card, trained_here: false }
    }

    /// The model's name: its file stem.
    pub fn name(&self) -> String {
        name_of(&self.path)
    }

    /// Short name for lists: the name, plus the test accuracy when known.
    pub fn label(&self) -> String {
        let name = if self.shipped { format!("{} (shipped)", self.name()) } else { self.name() };
        match &self.meta {
            Ok(m) => match &m.test_metrics {
                Some(t) => format!("{name} — {:.1}% test", t.accuracy * 100.0),
                None => name,
            },
            Err(_) => format!("{name} (unreadable)"),
        }
    }

    /// How it was made, in a few words, e.g. "shipped, head on web-faces".
    pub fn how_trained(&self) -> String {
        match &self.meta {
            Ok(m) => how_trained(m, self.shipped),
            Err(_) => "unreadable".into(),
        }
    }
}

/// A model's name: the file stem of its path.
pub fn name_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// How a model was made, in a few words: "shipped, head on web-faces", "trained on faces",
/// "zero-shot, no training".
pub fn how_trained(meta: &ModelMeta, shipped: bool) -> String {
    let names: Vec<String> = meta.trained_on().iter().map(|d| dataset_name(&d.root)).collect();
    let data = (!names.is_empty()).then(|| names.join(" + "));
    let what = match (&data, meta.training.is_some()) {
        (Some(d), _) if shipped => format!("head on {d}"),
        (Some(d), _) => format!("trained on {d}"),
        (None, false) => "zero-shot, no training".into(),
        (None, true) => "trained".into(),
    };
    if shipped { format!("shipped, {what}") } else { what }
}

/// The last part of a dataset path, for short texts.
pub fn dataset_name(root: &Path) -> String {
    root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| root.display().to_string())
}

/// True when `trained_on` (a dataset path recorded in a model) names the folder `root`. It may
/// read the disk (to resolve relative paths): call it off the UI thread where it matters.
pub fn same_folder(trained_on: &Path, root: &Path) -> bool {
    trained_on == root || matches!((trained_on.canonicalize(), root.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// The `.md` model card beside `model`, if any (cut at 64 KiB).
fn read_card(model: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(model.with_extension("md")).ok()?;
    let mut text = String::new();
    let n = f.take(MAX_CARD).read_to_string(&mut text).ok()?;
    if n as u64 >= MAX_CARD {
        text.push_str("\n\n(the rest of the card is not shown)");
    }
    Some(text)
}

/// True for the shipped model and anything else in the shipped or built-in models folders, which
/// the app never renames or deletes.
pub fn is_shipped(ctx: &Context, path: &Path) -> bool {
    path == ctx.default_model() || path.starts_with(&ctx.models_dir) || path.starts_with(ctx.builtin_models_dir())
}

/// Lists the shipped default model, then every model in the data folder (and `extra`, a model
/// chosen from elsewhere), newest first; those trained on `dataset` are marked.
pub fn list_models(ctx: &Context, dataset: Option<&Path>, extra: Option<&Path>) -> Vec<ModelInfo> {
    let mut out = Vec::new();
    let default = ctx.default_model();
    if default.exists() {
        out.push(ModelInfo::read(default.clone(), true));
    }
    let mut found = model_files(&ctx.trained_models_dir());
    if let Some(p) = extra.filter(|p| p.is_file()) {
        found.push(p.to_path_buf());
    }
    found.sort();
    found.dedup();
    found.retain(|p| *p != default);
    let mut models: Vec<ModelInfo> = found.into_iter().map(|p| ModelInfo::read(p, false)).collect();
    // Newest first by the date inside (RFC 3339 sorts as text); unreadable ones last, by name.
    models.sort_by(|a, b| {
        let created = |m: &ModelInfo| m.meta.as_ref().ok().map(|m| m.created.clone());
        created(b).cmp(&created(a)).then_with(|| a.path.cmp(&b.path))
    });
    out.extend(models);
    if let Some(root) = dataset {
        for m in &mut out {
            m.trained_here =
                m.meta.as_ref().is_ok_and(|meta| meta.trained_on().iter().any(|d| same_folder(&d.root, root)));
        }
    }
    out
}

/// The model files (`*.safetensors`, not hidden) directly in `dir`, sorted; none if it is missing.
fn model_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == MODEL_EXT)
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    v.sort();
    v
}

// ----------------------------------------------------------------------------------------------
// Moving models out of a dataset folder

/// What [`migrate_legacy_models`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Migration {
    /// Each model moved: from its old path to its new one.
    pub moved: Vec<(PathBuf, PathBuf)>,
    /// Files that stayed where they were, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

impl Migration {
    /// True when nothing was found to move.
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.failed.is_empty()
    }

    /// Where a model that was at `old` is now (`old` itself when it did not move).
    pub fn new_path(&self, old: &Path) -> Option<&Path> {
        self.moved.iter().find(|(from, _)| from == old).map(|(_, to)| to.as_path())
    }
}

/// Moves every model of `dataset_root`'s old models folder into the data folder, with its
/// companions (old-form `.json`, `.md` card). A name already taken there gets a `-2`, `-3`…
/// suffix; nothing is ever overwritten, and a file that cannot be moved stays where it was.
pub fn migrate_legacy_models(ctx: &Context, dataset_root: &Path) -> Migration {
    let old = legacy_models_dir(dataset_root);
    let mut out = Migration::default();
    let models = model_files(&old);
    if models.is_empty() {
        return out;
    }
    let dest = ctx.trained_models_dir();
    if let Err(e) = std::fs::create_dir_all(&dest) {
        let why = format!("cannot create the models folder {}: {e}", dest.display());
        out.failed = models.into_iter().map(|m| (m, why.clone())).collect();
        return out;
    }
    for m in models {
        match move_model(&m, &dest) {
            Ok((to, stayed)) => {
                tracing::info!(from = %m.display(), to = %to.display(), "moved a trained model to the data folder");
                out.moved.push((m, to));
                out.failed.extend(stayed);
            }
            Err(e) => {
                tracing::warn!(path = %m.display(), error = %e, "cannot move a trained model; it stays where it is");
                out.failed.push((m, e.to_string()));
            }
        }
    }
    // The old folder goes only when it is empty (`remove_dir` refuses otherwise).
    if std::fs::remove_dir(&old).is_ok() {
        tracing::info!(path = %old.display(), "removed the empty old models folder");
    }
    out
}

/// `dir/stem.safetensors` for the first of `stem`, `stem-2`, `stem-3`… where neither the model
/// nor any of its companions exists.
fn free_name(dir: &Path, stem: &str) -> io::Result<PathBuf> {
    for n in 1..10_000 {
        let name = if n == 1 { stem.to_string() } else { format!("{stem}-{n}") };
        let to = dir.join(format!("{name}.{MODEL_EXT}"));
        let taken = |p: &Path| p.symlink_metadata().is_ok();
        if !taken(&to) && !COMPANIONS.iter().any(|c| taken(&to.with_extension(c))) {
            return Ok(to);
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free name for {stem} in {}", dir.display())))
}

/// Moves the model `src` into `dir` under a free name, then its companions. Returns the new path
/// and the companions that stayed behind (with the reason).
fn move_model(src: &Path, dir: &Path) -> io::Result<(PathBuf, Vec<(PathBuf, String)>)> {
    let stem = name_of(src);
    loop {
        let to = free_name(dir, &stem)?;
        match move_file_no_replace(src, &to) {
            Ok(()) => return Ok((to.clone(), move_companions(src, &to))),
            // Someone took the name between the check and the move: pick the next one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Moves the companions of the model moved from `from` to `to`; returns those that stayed.
fn move_companions(from: &Path, to: &Path) -> Vec<(PathBuf, String)> {
    let mut stayed = Vec::new();
    for ext in COMPANIONS {
        let c = from.with_extension(ext);
        if c.symlink_metadata().is_err() {
            continue;
        }
        if let Err(e) = move_file_no_replace(&c, &to.with_extension(ext)) {
            tracing::warn!(path = %c.display(), error = %e, "a file of the model stays where it was");
            stayed.push((c, format!("it stays beside the old place of the model: {e}")));
        }
    }
    stayed
}

/// Moves `from` to `to` without ever replacing `to`; across file systems, copies (to a new file
/// only), syncs, then removes the original.
pub fn move_file_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match rename_no_replace(from, to) {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_then_remove(from, to),
        other => other,
    }
}

fn copy_then_remove(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).open(to)?;
    let len = src.metadata()?.len();
    let copied = io::copy(&mut src, &mut dst).and_then(|n| dst.sync_all().map(|()| n));
    drop(dst);
    let result = match copied {
        Ok(n) if n == len => std::fs::remove_file(from),
        Ok(n) => Err(io::Error::other(format!("copied {n} of {len} bytes"))),
        Err(e) => Err(e),
    };
    if result.is_err() {
        // The original is whole: remove the new copy so there is one model, in its old place.
        let _ = std::fs::remove_file(to);
    }
    result
}

// ----------------------------------------------------------------------------------------------
// Rename, export, delete

/// The longest model name, in bytes (file systems allow 255 for the whole file name).
const MAX_NAME: usize = 200;

/// Checks a new model name; returns it trimmed, or why it cannot be used.
pub fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("A model needs a name: type one.".into());
    }
    if name.contains(['/', '\\']) {
        return Err(format!(
            "'{name}' contains a slash: a model name cannot hold a folder. Choose a name without '/'."
        ));
    }
    if name.starts_with('.') {
        return Err("A model name cannot start with '.' (the file would be hidden).".into());
    }
    if name.chars().any(char::is_control) {
        return Err("A model name cannot hold control characters.".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("That name is {} bytes long; a model name can have at most {MAX_NAME}.", name.len()));
    }
    Ok(name)
}

/// Renames the model at `path` to `new_name` (its file stem; the metadata inside is kept), with
/// its companions. Refuses the shipped model, bad names and names already taken.
pub fn rename_model(ctx: &Context, path: &Path, new_name: &str) -> Outcome<PathBuf> {
    if is_shipped(ctx, path) {
        return Err(Failure::Failed("The shipped model cannot be renamed; export a copy to name it.".into()));
    }
    let name = check_name(new_name).map_err(Failure::Failed)?;
    let to = path.with_file_name(format!("{name}.{MODEL_EXT}"));
    if to == path {
        return Ok(to);
    }
    let clash = || Failure::Failed(format!("A model named '{name}' already exists: choose another name."));
    let taken = |p: &Path| p.symlink_metadata().is_ok();
    for ext in COMPANIONS {
        if taken(&path.with_extension(ext)) && taken(&to.with_extension(ext)) {
            return Err(Failure::Failed(format!(
                "{} already exists, and the model's own .{ext} would go there: choose another name.",
                to.with_extension(ext).display()
            )));
        }
    }
    match rename_no_replace(path, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(clash()),
        Err(e) => {
            return Err(Failure::Failed(format!(
                "Cannot rename {}: {e}. Check that its folder is writable.",
                path.display()
            )));
        }
    }
    for (c, why) in move_companions(path, &to) {
        tracing::warn!(path = %c.display(), %why, "a file of the renamed model kept its old name");
    }
    tracing::info!(from = %path.display(), to = %to.display(), "renamed a model");
    Ok(to)
}

/// `dest` with the `.safetensors` extension added when it has another one or none.
pub fn with_model_ext(dest: &Path) -> PathBuf {
    if dest.extension().is_some_and(|x| x == MODEL_EXT) {
        return dest.to_path_buf();
    }
    let mut s = OsString::from(dest.as_os_str());
    s.push(format!(".{MODEL_EXT}"));
    PathBuf::from(s)
}

/// Copies the model at `path` to `dest` (given `.safetensors` when it lacks it), as one file with
/// its metadata inside, plus its card beside it when there is one and the name is free. An
/// existing `dest` is replaced only with `overwrite` (the save dialog asked already).
pub fn export_model(path: &Path, dest: &Path, overwrite: bool) -> Outcome<PathBuf> {
    let dest = with_model_ext(dest);
    let fail = |why: String| Failure::Failed(why);
    if dest.parent().is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(fail(format!(
            "The folder {} does not exist: choose an existing folder.",
            dest.parent().unwrap_or(Path::new("")).display()
        )));
    }
    if dest.symlink_metadata().is_ok() {
        if gc_core::dataset::no_replace::same_file(path, &dest) {
            return Err(fail(format!("{} is the model itself: choose another place.", dest.display())));
        }
        if !overwrite {
            return Err(fail(format!(
                "{} already exists: choose another name (nothing was overwritten).",
                dest.display()
            )));
        }
    }
    let (_, source) = gc_core::model_file::read_meta(path)?;
    match source {
        // The one-file form: the bytes as they are.
        MetaSource::Embedded => {
            let bytes = std::fs::read(path).map_err(|e| fail(format!("Cannot read model {}: {e}", path.display())))?;
            gc_core::durable::write_atomic(&dest, &bytes, "export").map_err(|e| {
                fail(format!("Cannot write {}: {e}. Check that the folder is writable and has room.", dest.display()))
            })?;
        }
        // The old two-file form: written as one file, with its metadata inside.
        MetaSource::Sidecar => Model::load(path, &candle_core::Device::Cpu)?.save(&dest)?,
    }
    let card = path.with_extension("md");
    let card_to = dest.with_extension("md");
    if card.is_file()
        && card_to.symlink_metadata().is_err()
        && let Err(e) = std::fs::copy(&card, &card_to)
    {
        tracing::warn!(path = %card_to.display(), error = %e, "the model card was not exported");
    }
    tracing::info!(from = %path.display(), to = %dest.display(), "exported a model");
    Ok(dest)
}

/// Where deleted models go: the system trash, or a stand-in in tests.
pub trait Trash: Send + Sync {
    /// Moves `paths` to the trash, or says why it cannot (then nothing may be removed).
    fn trash(&self, paths: &[PathBuf]) -> Result<(), String>;
}

/// The desktop's trash (the `trash` crate: freedesktop.org trash, Windows recycle bin, macOS Trash).
pub struct SystemTrash;

impl Trash for SystemTrash {
    fn trash(&self, paths: &[PathBuf]) -> Result<(), String> {
        trash::delete_all(paths).map_err(|e| e.to_string())
    }
}

/// Moves the model at `path` and its companions to `trash`. The shipped model is refused; when
/// the trash cannot take it, nothing is removed and the error says so.
pub fn delete_model(ctx: &Context, trash: &dyn Trash, path: &Path) -> Outcome<PathBuf> {
    if is_shipped(ctx, path) {
        return Err(Failure::Failed("The shipped default model cannot be deleted.".into()));
    }
    if !path.is_file() {
        return Err(Failure::Failed(format!("{} is no longer there: refresh the list.", path.display())));
    }
    let mut files = vec![path.to_path_buf()];
    files.extend(COMPANIONS.iter().map(|c| path.with_extension(c)).filter(|c| c.is_file()));
    trash.trash(&files).map_err(|e| {
        Failure::Failed(format!(
            "The system trash is not available ({e}), so {} was not deleted. It stays in {}; remove it there by hand if you must.",
            name_of(path),
            path.parent().unwrap_or(Path::new("")).display()
        ))
    })?;
    tracing::info!(path = %path.display(), "moved a model to the trash");
    Ok(path.to_path_buf())
}

#[cfg(test)]
#[path = "model_store_tests.rs"]
mod tests;
