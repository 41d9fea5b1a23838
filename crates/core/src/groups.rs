//! Accuracy by group: group attributes of photos (from a CSV, or from UTKFace file names) and the
//! accuracy, Wilson 95% interval and per-class recall of each group's predictions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, IoContext, Result, invalid};
use crate::metrics::wilson;

/// Race names of UTKFace's race code (0-4).
pub const RACES: [&str; 5] = ["White", "Black", "Asian", "Indian", "Others"];
/// Age bands, youngest first.
pub const AGE_BANDS: [&str; 5] = ["<18", "18-29", "30-44", "45-59", "60+"];
/// Gender names of UTKFace's gender code (0 male, 1 female).
pub const GENDERS: [&str; 2] = ["male", "female"];
/// The columns read from UTKFace names.
pub const UTKFACE_COLUMNS: [&str; 3] = ["age_band", "gender", "race"];
/// How many paths an error or a report lists before "…".
const FIRST: usize = 5;

/// What a UTKFace file name (`age_gender_race_date.jpg[.chip.jpg]`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtkName {
    /// Age in years.
    pub age: u32,
    /// 0 male, 1 female.
    pub gender: u8,
    /// 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
    pub race: u8,
}

/// Parses a UTKFace file name; `None` when it is not `age_gender_race_date.ext` with valid codes.
pub fn parse_utkface(file_name: &str) -> Option<UtkName> {
    let parts: Vec<&str> = file_name.split('_').collect();
    let [age, gender, race, date] = parts.as_slice() else { return None };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (stamp, ext) = date.split_once('.')?;
    if !digits(age) || !digits(gender) || !digits(race) || !digits(stamp) || ext.is_empty() {
        return None;
    }
    let (age, gender, race) = (age.parse().ok()?, gender.parse().ok()?, race.parse().ok()?);
    (age <= 130 && gender <= 1 && race <= 4).then_some(UtkName { age, gender, race })
}

/// The age band of `age`: `<18`, `18-29`, `30-44`, `45-59` or `60+`.
pub fn age_band(age: u32) -> &'static str {
    match age {
        0..=17 => AGE_BANDS[0],
        18..=29 => AGE_BANDS[1],
        30..=44 => AGE_BANDS[2],
        45..=59 => AGE_BANDS[3],
        _ => AGE_BANDS[4],
    }
}

/// Group attributes of the photos of a folder: column names and each photo's values.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    /// The folder the paths are relative to.
    pub root: PathBuf,
    /// Column names (e.g. `age_band`, `race`).
    pub columns: Vec<String>,
    /// Values per photo, keyed by the path relative to `root`.
    by_key: HashMap<PathBuf, Vec<String>>,
    /// Photos with no values (UTKFace names that do not parse).
    pub unparsed: Vec<PathBuf>,
}

/// `p` without `.` components (and relative to `root` when under it).
fn key(root: &Path, p: &Path) -> PathBuf {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

/// "a, b, c (and N more)".
fn first_few(paths: &[PathBuf]) -> String {
    let mut s = paths.iter().take(FIRST).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    if paths.len() > FIRST {
        s += &format!(" and {} more", paths.len() - FIRST);
    }
    s
}

impl Groups {
    /// Groups from UTKFace file names (`age_band`, `gender`, `race`); names that do not parse go to `unparsed`.
    pub fn from_utkface_names<'a>(root: &Path, files: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut g = Groups {
            root: root.to_path_buf(),
            columns: UTKFACE_COLUMNS.map(String::from).into(),
            ..Default::default()
        };
        for f in files {
            match f.file_name().and_then(|n| n.to_str()).and_then(parse_utkface) {
                Some(u) => {
                    let values = [age_band(u.age), GENDERS[u.gender as usize], RACES[u.race as usize]];
                    g.by_key.insert(key(root, f), values.map(String::from).into());
                }
                None => g.unparsed.push(f.to_path_buf()),
            }
        }
        g
    }

    /// Groups from the CSV file `csv` (header `path,<column>,...`); `files` are the photos under
    /// `root`, which must match the CSV's paths one to one.
    pub fn from_csv(csv: &Path, root: &Path, files: &[PathBuf]) -> Result<Self> {
        let f = std::fs::File::open(csv).io(|| format!("cannot open the groups CSV {}", csv.display()))?;
        Self::from_csv_reader(f, root, files).map_err(|e| Error::Invalid(format!("{}: {e}", csv.display())))
    }

    /// [`Groups::from_csv`] from any reader.
    pub fn from_csv_reader(r: impl Read, root: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut rd = csv::ReaderBuilder::new().has_headers(true).from_reader(r);
        let header = rd.headers().map_err(|e| Error::Invalid(format!("cannot read the CSV header: {e}")))?.clone();
        if header.len() < 2 {
            invalid!("the CSV needs a header `path,<column>,...` with at least one group column, found {header:?}");
        }
        let columns: Vec<String> = header.iter().skip(1).map(|c| c.trim().to_string()).collect();
        let canon_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let mut by_key = HashMap::new();
        for row in rd.records() {
            let row = row.map_err(|e| Error::Invalid(format!("bad CSV row: {e}")))?;
            let p = Path::new(&row[0]);
            let k = if p.is_absolute() && !p.starts_with(root) { key(&canon_root, p) } else { key(root, p) };
            let line = row.position().map_or(0, |pos| pos.line());
            if by_key.insert(k, row.iter().skip(1).map(|v| v.trim().to_string()).collect()).is_some() {
                invalid!("line {line}: the path {} appears more than once", &row[0]);
            }
        }
        let in_dir: HashSet<PathBuf> = files.iter().map(|f| key(root, f)).collect();
        let mut csv_only: Vec<PathBuf> = by_key.keys().filter(|k| !in_dir.contains(*k)).cloned().collect();
        let mut dir_only: Vec<PathBuf> = in_dir.iter().filter(|k| !by_key.contains_key(*k)).cloned().collect();
        if !csv_only.is_empty() || !dir_only.is_empty() {
            csv_only.sort();
            dir_only.sort();
            invalid!(
                "the CSV does not match the photos under {}: {} path(s) in the CSV but not in the folder{}; \
                 {} photo(s) in the folder but not in the CSV{}. Give every photo one row, its path relative to \
                 the folder or absolute",
                root.display(),
                csv_only.len(),
                if csv_only.is_empty() { String::new() } else { format!(" ({})", first_few(&csv_only)) },
                dir_only.len(),
                if dir_only.is_empty() { String::new() } else { format!(" ({})", first_few(&dir_only)) },
            );
        }
        Ok(Groups { root: root.to_path_buf(), columns, by_key, unparsed: Vec::new() })
    }

    /// The values of the photo at `path`, one per column.
    pub fn of(&self, path: &Path) -> Option<&[String]> {
        self.by_key.get(&key(&self.root, path)).map(Vec::as_slice)
    }
}

/// Accuracy of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStat {
    /// Photos in the group.
    pub n: usize,
    /// Fraction correct.
    pub accuracy: f64,
    /// Wilson 95% interval of the accuracy.
    pub ci: (f64, f64),
    /// Recall per true class present in the group.
    pub recall: BTreeMap<String, f64>,
    /// Photos per true class, correct per true class.
    #[serde(skip)]
    pub per_class: Vec<(usize, usize)>,
}

impl GroupStat {
    fn of(classes: &[String], per_class: Vec<(usize, usize)>) -> Self {
        let n: usize = per_class.iter().map(|c| c.0).sum();
        let correct: usize = per_class.iter().map(|c| c.1).sum();
        let recall = classes
            .iter()
            .zip(&per_class)
            .filter(|(_, c)| c.0 > 0)
            .map(|(k, c)| (k.clone(), c.1 as f64 / c.0 as f64))
            .collect();
        let accuracy = if n > 0 { correct as f64 / n as f64 } else { 0.0 };
        GroupStat { n, accuracy, ci: wilson(correct, n), recall, per_class }
    }
}

/// One column's groups, in a stable order (age bands youngest first, UTKFace codes in code order, else by name).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnReport {
    /// Column name.
    pub column: String,
    /// Each value and its figures.
    pub values: Vec<(String, GroupStat)>,
}

impl ColumnReport {
    /// The best and the worst group's accuracy among groups of at least `min_n` photos, and their difference.
    pub fn gap(&self, min_n: usize) -> Option<(&str, &str, f64)> {
        let big = || self.values.iter().filter(|v| v.1.n >= min_n);
        let best = big().max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))?;
        let worst = big().min_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))?;
        Some((&best.0, &worst.0, best.1.accuracy - worst.1.accuracy))
    }
}

/// Accuracy per column and value, recall per class over all grouped photos, and the photos left out.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    /// The model's classes.
    pub classes: Vec<String>,
    /// One entry per column.
    pub columns: Vec<ColumnReport>,
    /// Figures over every scored photo (recall per class: women vs men).
    pub overall: GroupStat,
    /// Scored photos that have no group values (names that do not parse).
    pub ungrouped: Vec<PathBuf>,
}

/// Photos and correct predictions per true class.
type Counts = Vec<(usize, usize)>;

/// Sort key of a group value: known UTKFace values in their order, then the rest by name.
fn order(v: &str) -> (usize, String) {
    let known = AGE_BANDS.iter().chain(&GENDERS).chain(&RACES).position(|k| *k == v);
    (known.unwrap_or(usize::MAX), v.to_string())
}

/// Accuracy by group of `outcomes` (path, true class, predicted class; classes index `classes`).
pub fn by_group<'a>(
    groups: &Groups,
    classes: &[String],
    outcomes: impl IntoIterator<Item = (&'a Path, usize, usize)>,
) -> GroupReport {
    let k = classes.len();
    let mut cells: Vec<BTreeMap<(usize, String), Counts>> = vec![BTreeMap::new(); groups.columns.len()];
    let mut overall = vec![(0usize, 0usize); k];
    let mut ungrouped = Vec::new();
    for (path, label, predicted) in outcomes {
        let hit = usize::from(label == predicted);
        overall[label].0 += 1;
        overall[label].1 += hit;
        let Some(values) = groups.of(path) else {
            ungrouped.push(path.to_path_buf());
            continue;
        };
        for (col, v) in cells.iter_mut().zip(values) {
            let c = col.entry(order(v)).or_insert_with(|| vec![(0, 0); k]);
            c[label].0 += 1;
            c[label].1 += hit;
        }
    }
    let columns = groups
        .columns
        .iter()
        .zip(cells)
        .map(|(name, col)| ColumnReport {
            column: name.clone(),
            values: col.into_iter().map(|((_, v), pc)| (v, GroupStat::of(classes, pc))).collect(),
        })
        .collect();
    GroupReport { classes: classes.to_vec(), columns, overall: GroupStat::of(classes, overall), ungrouped }
}

impl GroupReport {
    /// `{"<column>": {"<value>": {"n", "accuracy", "ci": [lo, hi], "recall": {...}}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let cols = self.columns.iter().map(|c| {
            let vals = c.values.iter().map(|(v, s)| (v.clone(), serde_json::to_value(s).unwrap_or_default()));
            (c.column.clone(), serde_json::Value::Object(vals.collect()))
        });
        serde_json::Value::Object(cols.collect())
    }

    /// Text tables: per column, each value with n, accuracy, interval and recall per class; the gap.
    pub fn format(&self) -> String {
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        let recall = |s: &GroupStat| {
            let w = |c: &String| c.len() + 7;
            self.classes
                .iter()
                .map(|c| format!(" {:>w$}", s.recall.get(c).map_or("-".into(), |r| pct(*r)), w = w(c)))
                .collect::<String>()
        };
        let head = self.classes.iter().map(|c| format!(" recall {c}")).collect::<String>();
        let mut s = String::from("recall by class over all scored photos:");
        for (c, (n, ok)) in self.classes.iter().zip(&self.overall.per_class) {
            let (lo, hi) = wilson(*ok, *n);
            s += &format!("  {c} {} (95% CI {}-{}, n={n})", pct(*ok as f64 / (*n).max(1) as f64), pct(lo), pct(hi));
        }
        s += "\n";
        for c in &self.columns {
            s += &format!("\n{:<12} {:>6} {:>9} {:>17}{head}\n", c.column, "n", "accuracy", "95% CI");
            for (v, st) in &c.values {
                let ci = format!("{}-{}", pct(st.ci.0), pct(st.ci.1));
                s += &format!("{v:<12} {:>6} {:>9} {ci:>17}{}\n", st.n, pct(st.accuracy), recall(st));
            }
            if let Some((best, worst, gap)) = c.gap(30).filter(|_| c.values.len() > 1) {
                s += &format!("gap (groups of 30+ photos): {:.1} points, {best} best, {worst} worst\n", gap * 100.0);
            }
        }
        if !self.ungrouped.is_empty() {
            s += &format!(
                "\n{} scored photo(s) have no group (left out of the tables): {}\n",
                self.ungrouped.len(),
                first_few(&self.ungrouped)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utkface_names_parse_with_codes_and_age_bands() {
        let u = parse_utkface("18_0_0_20170110231228322.jpg.chip.jpg").unwrap();
        assert_eq!(u, UtkName { age: 18, gender: 0, race: 0 });
        assert_eq!(parse_utkface("61_1_2_20170109142408075.jpg"), Some(UtkName { age: 61, gender: 1, race: 2 }));
        assert_eq!(parse_utkface("1_1_4_2016.JPG").map(|u| u.race), Some(4));
        for bad in [
            "39_1_20170116174525125.jpg.chip.jpg", // no race (a known UTKFace quirk)
            "20_0_5_20170116174525125.jpg",        // race 5
            "20_2_0_20170116174525125.jpg",        // gender 2
            "x_0_0_20170116174525125.jpg",
            "20_0_0_2017x.jpg",
            "20_0_0_20170116174525125", // no extension
            "20_0_0_1_2.jpg",
            "-5_0_0_1.jpg",
            "",
            "female_3.png",
        ] {
            assert_eq!(parse_utkface(bad), None, "{bad}");
        }
        let bands: Vec<&str> = [0, 17, 18, 29, 30, 44, 45, 59, 60, 116].map(age_band).into();
        assert_eq!(bands, ["<18", "<18", "18-29", "18-29", "30-44", "30-44", "45-59", "45-59", "60+", "60+"]);
    }

    #[test]
    fn groups_from_names_keep_the_unparsed() {
        let root = Path::new("/d");
        let files = [root.join("male/25_0_3_1.jpg"), root.join("female/odd.jpg")];
        let g = Groups::from_utkface_names(root, files.iter().map(PathBuf::as_path));
        assert_eq!(g.of(&files[0]).unwrap(), ["18-29", "male", "Indian"]);
        assert_eq!(g.of(&files[1]), None);
        assert_eq!(g.unparsed, [files[1].clone()]);
    }

    fn files(root: &Path, names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(|n| root.join(n)).collect()
    }

    #[test]
    fn csv_paths_with_commas_quotes_and_absolute_paths_are_read() {
        let root = Path::new("/data/set");
        let fs = files(root, &["male/a, b.jpg", "female/say \"hi\".png", "female/c.jpg"]);
        let csv = "path,skin_tone,age_band\n\"male/a, b.jpg\",dark,30-44\n\"./female/say \"\"hi\"\".png\",light, 60+\n/data/set/female/c.jpg,dark,18-29\n";
        let g = Groups::from_csv_reader(csv.as_bytes(), root, &fs).unwrap();
        assert_eq!(g.columns, ["skin_tone", "age_band"]);
        assert_eq!(g.of(&fs[0]).unwrap(), ["dark", "30-44"]);
        assert_eq!(g.of(&fs[1]).unwrap(), ["light", "60+"]);
        assert_eq!(g.of(&fs[2]).unwrap(), ["dark", "18-29"]);
    }

    #[test]
    fn a_csv_that_does_not_match_the_folder_names_both_sides() {
        let root = Path::new("/d");
        let fs = files(root, &["male/a.jpg", "male/b.jpg", "female/c.jpg"]);
        let csv = "path,tone\nmale/a.jpg,x\nmale/zz.jpg,y\nmale/yy.jpg,y\n";
        let e = Groups::from_csv_reader(csv.as_bytes(), root, &fs).unwrap_err().to_string();
        assert!(e.contains("2 path(s) in the CSV but not in the folder (male/yy.jpg, male/zz.jpg)"), "{e}");
        assert!(e.contains("2 photo(s) in the folder but not in the CSV (female/c.jpg, male/b.jpg)"), "{e}");
        let dup = "path,tone\nmale/a.jpg,x\nmale/a.jpg,y\n";
        let e = Groups::from_csv_reader(dup.as_bytes(), root, &fs).unwrap_err().to_string();
        assert!(e.contains("appears more than once"), "{e}");
        let e = Groups::from_csv_reader("path\nmale/a.jpg\n".as_bytes(), root, &fs).unwrap_err().to_string();
        assert!(e.contains("at least one group column"), "{e}");
        let many: Vec<String> = (0..8).map(|i| format!("male/n{i}.jpg")).collect();
        let e = Groups::from_csv_reader(
            "path,t\n".as_bytes(),
            root,
            &files(root, &many.iter().map(String::as_str).collect::<Vec<_>>()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("8 photo(s) in the folder but not in the CSV") && e.contains("and 3 more"), "{e}");
    }

    #[test]
    fn accuracy_by_group_matches_hand_counts() {
        let root = Path::new("/d");
        let classes = vec!["female".to_string(), "male".to_string()];
        // Asian: 4 women (2 right), 2 men (2 right); White: 3 men (3 right), 1 woman (1 right); 1 odd name.
        let mut out: Vec<(PathBuf, usize, usize)> = Vec::new();
        for (i, (race, label, pred)) in [
            (2, 0, 0),
            (2, 0, 0),
            (2, 0, 1),
            (2, 0, 1),
            (2, 1, 1),
            (2, 1, 1),
            (0, 1, 1),
            (0, 1, 1),
            (0, 1, 1),
            (0, 0, 0),
        ]
        .into_iter()
        .enumerate()
        {
            out.push((root.join(format!("{}_{}_{race}_{i}.jpg", 20 + 10 * i, 1 - label)), label, pred));
        }
        out.push((root.join("odd.jpg"), 1, 0));
        let g = Groups::from_utkface_names(root, out.iter().map(|o| o.0.as_path()));
        let r = by_group(&g, &classes, out.iter().map(|o| (o.0.as_path(), o.1, o.2)));
        let race = &r.columns[2];
        assert_eq!(race.values.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(), ["White", "Asian"]);
        let asian = &race.values[1].1;
        assert_eq!((asian.n, asian.accuracy), (6, 4.0 / 6.0));
        assert_eq!(asian.recall["female"], 0.5);
        assert_eq!(asian.recall["male"], 1.0);
        assert_eq!(race.values[0].1.accuracy, 1.0);
        assert_eq!(race.gap(1).unwrap().0, "White");
        assert!((race.gap(1).unwrap().2 - (1.0 - 4.0 / 6.0)).abs() < 1e-12);
        let ages: Vec<&str> = r.columns[0].values.iter().map(|v| v.0.as_str()).collect();
        assert_eq!(ages, ["18-29", "30-44", "45-59", "60+"], "in band order");
        let n_by_age: usize = r.columns[0].values.iter().map(|v| v.1.n).sum();
        assert_eq!(n_by_age, 10, "every grouped photo counted once per column");
        assert_eq!(r.ungrouped, [root.join("odd.jpg")]);
        assert_eq!((r.overall.n, r.overall.per_class[1]), (11, (6, 5)), "overall counts the odd name too");
        // Wilson 95% of 4/6, by hand: centre 0.6016, half 0.3016.
        let (lo, hi) = asian.ci;
        assert!((lo - 0.3000).abs() < 1e-3 && (hi - 0.9032).abs() < 1e-3, "{lo} {hi}");
        let j = r.to_json();
        assert_eq!(j["race"]["Asian"]["n"], 6);
        assert_eq!(j["race"]["Asian"]["ci"].as_array().unwrap().len(), 2);
        let text = r.format();
        assert!(
            text.contains("Asian") && text.contains("66.7%") && text.contains("1 scored photo(s) have no group"),
            "{text}"
        );
    }
}
