//! A dataset folder: one sub-folder per class (`male/`, `female/`), plus `excluded/` for curated-out photos.

pub mod journal;
pub mod no_replace;
pub mod path_serde;
pub mod split;
pub mod walk;

pub use walk::collect_images;

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, invalid};

use crate::imaging::has_image_extension;

/// Folder (beside the class folders) that holds excluded photos; never a class.
pub const EXCLUDED_DIR: &str = "excluded";

/// One image of the dataset with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The file.
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
}

/// The scanned contents of a dataset folder.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names, sorted (the sub-folder names).
    pub classes: Vec<String>,
    /// Every image file, sorted by class then path.
    pub items: Vec<Item>,
    /// Sub-folders that are not classes, and why.
    pub ignored: Vec<Ignored>,
}

/// A sub-folder of a dataset that is not a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The folder.
    pub path: PathBuf,
    /// Why it is not a class.
    pub why: &'static str,
}

impl Ignored {
    fn new(path: &Path, why: &'static str) -> Self {
        Self { path: path.to_path_buf(), why }
    }
}

impl Dataset {
    /// Scans `root`: every non-hidden sub-folder except `excluded/` that holds images is a class;
    /// files with image extensions directly inside it are its items.
    ///
    /// A class folder may be a symbolic link to a folder, and links to photos inside a class folder
    /// are followed. A sub-folder that holds no images, whose name is not UTF-8, or that links back to
    /// the dataset or above it, is not a class: it is listed in [`Dataset::ignored`] and logged.
    pub fn scan(root: &Path) -> Result<Self> {
        let meta = std::fs::metadata(root)
            .io(|| format!("dataset folder {} does not exist or cannot be read", root.display()))?;
        if !meta.is_dir() {
            invalid!(
                "{} is not a folder: a dataset is a folder with one sub-folder per class (e.g. male/ and female/)",
                root.display()
            );
        }
        let started = std::time::Instant::now();
        let real_root = root.canonicalize().io(|| format!("cannot resolve {}", root.display()))?;
        let mut candidates = Vec::new();
        let mut ignored = Vec::new();
        for entry in std::fs::read_dir(root).io(|| format!("cannot list {}", root.display()))? {
            let entry = entry.io(|| format!("cannot list {}", root.display()))?;
            let path = entry.path();
            let raw = entry.file_name();
            if raw.as_encoded_bytes().starts_with(b".") || raw == EXCLUDED_DIR || !path.is_dir() {
                continue;
            }
            let Some(name) = raw.to_str() else {
                ignored.push(Ignored::new(&path, "its name is not UTF-8 text, so it cannot name a class; rename it"));
                continue;
            };
            if path.canonicalize().is_ok_and(|real| real_root.starts_with(&real)) {
                ignored.push(Ignored::new(&path, "it links back to the dataset folder or above it (a loop)"));
                continue;
            }
            candidates.push(name.to_string());
        }
        candidates.sort();
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for class in candidates {
            let dir = root.join(&class);
            // The entry's own type answers without a stat for all but links (which are followed):
            // 100,000 photos list in a fraction of the time.
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .io(|| format!("cannot list class folder {}", dir.display()))?
                .filter_map(|e| {
                    let e = e.ok()?;
                    let path = e.path();
                    let file = match e.file_type() {
                        Ok(t) if !t.is_symlink() => t.is_file(),
                        _ => path.is_file(),
                    };
                    (file && has_image_extension(&path)).then_some(path)
                })
                .collect();
            if files.is_empty() {
                ignored.push(Ignored::new(&dir, "it holds no photos, so it is not a class"));
                continue;
            }
            files.sort();
            let label = classes.len();
            classes.push(class);
            items.extend(files.into_iter().map(|path| Item { path, label }));
        }
        for i in &ignored {
            tracing::warn!("{} is not a class: {}", i.path.display(), i.why);
        }
        tracing::debug!(
            classes = classes.len(),
            photos = items.len(),
            secs = started.elapsed().as_secs_f64(),
            "dataset scanned"
        );
        Ok(Self { root: root.to_path_buf(), classes, items, ignored })
    }

    /// Number of items per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for item in &self.items {
            counts[item.label] += 1;
        }
        counts
    }

    /// Fails with advice unless there are at least two classes with at least one image each.
    pub fn require_trainable(&self) -> Result<()> {
        if self.classes.is_empty() {
            invalid!(
                "{} has no class folders: create one sub-folder per class (e.g. male/ and female/) and put photos in them",
                self.root.display()
            );
        }
        let counts = self.counts();
        let non_empty: Vec<&str> =
            self.classes.iter().zip(&counts).filter(|(_, n)| **n > 0).map(|(c, _)| c.as_str()).collect();
        if non_empty.len() < 2 {
            invalid!(
                "{} needs photos in at least two class folders to train (found {}): add photos to the other class",
                self.root.display(),
                if non_empty.is_empty() { "no photos at all".to_string() } else { format!("only '{}'", non_empty[0]) }
            );
        }
        Ok(())
    }
}

/// Scans several dataset folders for one training run: each must be trainable, no folder may be
/// named twice, and all must have the same class folders (by name), so a label means one class in all.
pub fn scan_all(roots: &[PathBuf]) -> Result<Vec<Dataset>> {
    if roots.is_empty() {
        invalid!("no dataset folder given: name at least one folder with one sub-folder per class");
    }
    let mut out: Vec<Dataset> = Vec::with_capacity(roots.len());
    let mut seen: Vec<PathBuf> = Vec::new();
    for root in roots {
        let ds = Dataset::scan(root)?;
        ds.require_trainable()?;
        let real = root.canonicalize().unwrap_or_else(|_| root.clone());
        if let Some(i) = seen.iter().position(|s| *s == real) {
            invalid!(
                "{} and {} are the same dataset folder: name each folder once",
                roots[i].display(),
                root.display()
            );
        }
        seen.push(real);
        out.push(ds);
    }
    if out.iter().any(|d| d.classes != out[0].classes) {
        let listing: Vec<String> =
            out.iter().map(|d| format!("{} has {}", d.root.display(), d.classes.join(", "))).collect();
        invalid!(
            "the dataset folders do not have the same classes ({}): give every folder the same class \
             sub-folders (e.g. male/ and female/), or train on them separately",
            listing.join("; ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_classes_and_skips_excluded_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["male", "female", "excluded", ".gender-classifier"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("male/a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("female/b.PNG"), b"x").unwrap();
        std::fs::write(dir.path().join("female/notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("excluded/c.jpg"), b"x").unwrap();
        let ds = Dataset::scan(dir.path()).unwrap();
        assert_eq!(ds.classes, vec!["female", "male"]);
        assert_eq!(ds.counts(), vec![1, 1]);
        ds.require_trainable().unwrap();
    }

    #[test]
    fn empty_folders_and_loops_are_not_classes() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["male", "female", "other"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("male/a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("female/b.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("other/notes.txt"), b"x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
            std::os::unix::fs::symlink("female", dir.path().join("women")).unwrap();
            std::os::unix::fs::symlink("a.jpg", dir.path().join("male/link.jpg")).unwrap();
        }
        let ds = Dataset::scan(dir.path()).unwrap();
        let ignored: Vec<_> = ds.ignored.iter().map(|i| i.path.file_name().unwrap().to_owned()).collect();
        assert!(ignored.contains(&"other".into()), "{ignored:?}");
        #[cfg(unix)]
        {
            assert_eq!(ds.classes, vec!["female", "male", "women"]);
            assert_eq!(ds.counts(), vec![1, 2, 1]);
            assert!(ignored.contains(&"loop".into()), "{ignored:?}");
        }
    }

    #[test]
    fn only_files_and_links_to_files_are_photos() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["male", "female", "male/folder.jpg"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("male/a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("female/b.jpg"), b"x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("missing.jpg", dir.path().join("male/gone.jpg")).unwrap();
            std::os::unix::fs::symlink("folder.jpg", dir.path().join("male/to-folder.jpg")).unwrap();
            std::os::unix::fs::symlink("../female/b.jpg", dir.path().join("male/b-link.jpg")).unwrap();
        }
        let ds = Dataset::scan(dir.path()).unwrap();
        let names: Vec<_> =
            ds.items.iter().map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        #[cfg(unix)]
        assert_eq!(names, ["b.jpg", "a.jpg", "b-link.jpg"]);
        #[cfg(not(unix))]
        assert_eq!(names, ["b.jpg", "a.jpg"]);
    }

    #[test]
    fn empty_single_class_and_missing_folders_explain_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let e = Dataset::scan(dir.path()).unwrap().require_trainable().unwrap_err();
        assert!(e.to_string().contains("no class folders"), "{e}");
        std::fs::create_dir(dir.path().join("male")).unwrap();
        std::fs::write(dir.path().join("male/a.jpg"), b"x").unwrap();
        let e = Dataset::scan(dir.path()).unwrap().require_trainable().unwrap_err();
        assert!(e.to_string().contains("only 'male'"), "{e}");
        let e = Dataset::scan(&dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    fn make(root: &Path, classes: &[&str]) {
        for c in classes {
            std::fs::create_dir_all(root.join(c)).unwrap();
            std::fs::write(root.join(c).join("a.jpg"), b"x").unwrap();
        }
    }

    #[test]
    fn several_folders_must_share_their_classes_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        make(&a, &["male", "female"]);
        make(&b, &["female", "male"]);
        make(&c, &["man", "woman"]);
        let both = scan_all(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(both.len(), 2);
        assert!(both.iter().all(|d| d.classes == ["female", "male"]));
        assert_eq!(both[1].root, b);
        let e = scan_all(&[a.clone(), c.clone()]).unwrap_err().to_string();
        for want in [&format!("{} has female, male", a.display()), &format!("{} has man, woman", c.display())] {
            assert!(e.contains(want.as_str()), "missing {want:?} in: {e}");
        }
        assert!(e.contains("same classes"), "{e}");
        let e = scan_all(&[a.clone(), a.join("../a")]).unwrap_err().to_string();
        assert!(e.contains("same dataset folder"), "{e}");
        let e = scan_all(&[]).unwrap_err().to_string();
        assert!(e.contains("no dataset folder"), "{e}");
        // A folder with one class is refused on its own, before classes are compared.
        let d = dir.path().join("d");
        make(&d, &["male"]);
        let e = scan_all(&[a, d]).unwrap_err().to_string();
        assert!(e.contains("only 'male'"), "{e}");
    }
}
