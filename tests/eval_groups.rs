//! `eval --groups`: accuracy by group from UTKFace file names and from a CSV, with the shipped
//! model, on generated photos named like UTKFace files and on real utk-dev photos.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::cli::{run, stderr};
use serde_json::Value;

/// The expected (column, value) counts of UTKFace names, parsed here independently of gc-core.
fn expected_counts(names: &[String]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for n in names {
        let p: Vec<&str> = n.split('_').collect();
        let age: u32 = p[0].parse().unwrap();
        let band = match age {
            0..=17 => "<18",
            18..=29 => "18-29",
            30..=44 => "30-44",
            45..=59 => "45-59",
            _ => "60+",
        };
        let gender = ["male", "female"][p[1].parse::<usize>().unwrap()];
        let race = ["White", "Black", "Asian", "Indian", "Others"][p[2].parse::<usize>().unwrap()];
        for (c, v) in [("age_band", band), ("gender", gender), ("race", race)] {
            *m.entry((c.to_string(), v.to_string())).or_insert(0) += 1;
        }
    }
    m
}

/// Checks the `groups` object's shape and that its counts are `expected`; returns the per-column sums.
fn check_groups(doc: &Value, expected: &BTreeMap<(String, String), usize>) {
    let groups = doc["groups"].as_object().expect("a groups object");
    let mut seen = BTreeMap::new();
    for (column, values) in groups {
        for (value, g) in values.as_object().expect("values per column") {
            let n = g["n"].as_u64().expect("n") as usize;
            let acc = g["accuracy"].as_f64().expect("accuracy");
            let ci = g["ci"].as_array().expect("ci as [lo, hi]");
            let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
            assert!((0.0..=1.0).contains(&acc), "{column}/{value}: accuracy {acc}");
            assert!(
                lo <= acc + 1e-12 && acc <= hi + 1e-12 && (0.0..=1.0).contains(&lo) && hi <= 1.0,
                "{column}/{value}: {g}"
            );
            seen.insert((column.clone(), value.clone()), n);
        }
    }
    assert_eq!(&seen, expected, "n per group");
}

/// Writes generated photos named like UTKFace files; returns the names per class.
fn utk_like(dir: &Path) -> Vec<(String, String)> {
    let races = [0, 1, 2, 3, 4, 2];
    let ages = [17, 18, 29, 30, 59, 60];
    let mut out = Vec::new();
    for (c, class) in ["male", "female"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..6 {
            let name = format!("{}_{c}_{}_2017011{i}1212{c}.jpg.chip.jpg", ages[i], races[i]);
            common::synthetic(i as u32 * 11 + c as u32 * 500 + 3, 64, 64).save(dir.join(class).join(&name)).unwrap();
            out.push((class.to_string(), name));
        }
    }
    out
}

#[test]
fn groups_utkface_json_has_the_shape_and_counts_of_the_names() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("utk");
    let names = utk_like(&data);
    // One name that is not a UTKFace name: counted and listed, never silently dropped.
    common::synthetic(999, 64, 64).save(data.join("female/holiday photo.jpg")).unwrap();
    let cache = tmp.path().join("cache");
    let o = run(&["eval", data.to_str().unwrap(), "--groups", "utkface", "--json"], &cache);
    let doc: Value = serde_json::from_str(&common::cli::ok(&o)).expect("JSON");
    assert_eq!(doc["scope"], "All", "the shipped model was not trained here: every photo");
    assert_eq!(doc["metrics"]["count"], 13);
    let expected = expected_counts(&names.iter().map(|n| n.1.clone()).collect::<Vec<_>>());
    assert_eq!(expected[&("age_band".to_string(), "<18".to_string())], 2);
    check_groups(&doc, &expected);
    for column in ["age_band", "gender", "race"] {
        let sum: u64 = doc["groups"][column].as_object().unwrap().values().map(|g| g["n"].as_u64().unwrap()).sum();
        assert_eq!(sum, 12, "{column}: every photo with a UTKFace name, once");
    }
    let ungrouped: Vec<&str> = doc["ungrouped"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(ungrouped.len() == 1 && ungrouped[0].ends_with("holiday photo.jpg"), "{ungrouped:?}");
    // Recall per class over all photos (women vs men).
    assert_eq!(doc["groups_overall"]["n"], 13);
    assert!(
        doc["groups_overall"]["recall"]["female"].is_number() && doc["groups_overall"]["recall"]["male"].is_number()
    );

    // The text report: a table per column, the split measured, and the odd name reported.
    let text = common::cli::ok(&run(&["eval", data.to_str().unwrap(), "--groups", "utkface"], &cache));
    assert!(text.contains("measured on all photos"), "{text}");
    for head in ["age_band", "gender", "race", "95% CI", "recall female", "1 scored photo(s) have no group"] {
        assert!(text.contains(head), "{head} missing from:\n{text}");
    }
    let asian = text.lines().find(|l| l.starts_with("Asian ")).expect("an Asian row");
    assert_eq!(asian.split_whitespace().nth(1), Some("4"), "{asian}");

    // CSV output carries the group columns, empty for the odd name.
    let csv = common::cli::ok(&run(&["eval", data.to_str().unwrap(), "--groups", "utkface", "--csv"], &cache));
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[header.len() - 3..], ["age_band", "gender", "race"]);
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 13);
    let odd = rows.iter().find(|r| r[0].ends_with("holiday photo.jpg")).unwrap();
    assert_eq!(&odd[header.len() - 1], "");
    let r60 = rows.iter().find(|r| r[0].contains("/60_0_2_")).unwrap();
    assert_eq!((&r60[header.len() - 3], &r60[header.len() - 1]), ("60+", "Asian"));
}

#[test]
fn groups_from_a_csv_and_a_csv_that_does_not_match() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("set");
    common::synthetic_dataset(&data, &["female", "male"], 3);
    let cache = tmp.path().join("cache");
    let csv = tmp.path().join("groups.csv");
    let abs = data.join("male/male_2.png");
    std::fs::write(
        &csv,
        format!(
            "path,skin_tone\nfemale/female_0.png,dark\n./female/female_1.png,light\nfemale/female_2.png,dark\n\
             male/male_0.png,light\nmale/male_1.png,dark\n\"{}\",light\n",
            abs.display()
        ),
    )
    .unwrap();
    let o = run(&["eval", data.to_str().unwrap(), "--groups", csv.to_str().unwrap(), "--json"], &cache);
    let doc: Value = serde_json::from_str(&common::cli::ok(&o)).unwrap();
    let expected: BTreeMap<(String, String), usize> =
        [(("skin_tone".to_string(), "dark".to_string()), 3), (("skin_tone".to_string(), "light".to_string()), 3)]
            .into();
    check_groups(&doc, &expected);

    // Three photos missing from the CSV, one CSV row with no photo: the error names them and counts them.
    std::fs::write(
        &csv,
        "path,skin_tone\nfemale/female_0.png,dark\nfemale/female_1.png,light\nfemale/gone.png,x\nmale/male_0.png,x\n",
    )
    .unwrap();
    let o = run(&["eval", data.to_str().unwrap(), "--groups", csv.to_str().unwrap()], &cache);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("1 path(s) in the CSV but not in the folder (female/gone.png)"), "{err}");
    assert!(
        err.contains(
            "3 photo(s) in the folder but not in the CSV (female/female_2.png, male/male_1.png, male/male_2.png)"
        ),
        "{err}"
    );

    let o = run(&["eval", data.to_str().unwrap(), "--groups", "no-such.csv"], &cache);
    assert!(!o.status.success() && stderr(&o).contains("give `utkface` or a CSV file"), "{}", stderr(&o));
}

/// utk-dev, next to the repository; fails (never skips) when it is absent.
fn utk_dev() -> PathBuf {
    let p = common::root().join("../shared/datasets/utk-dev");
    assert!(
        p.join("male").is_dir() && p.join("female").is_dir(),
        "development dataset missing: expected {} with male/ and female/ (see ../shared/datasets/README.md)",
        p.display()
    );
    p
}

#[test]
fn groups_on_real_utk_dev_photos_count_every_photo_of_each_group() {
    let src = utk_dev();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("utk");
    let mut names = Vec::new();
    for class in ["male", "female"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        let files = common::class_files(&src, class);
        // 40 spread over the sorted names, so every age band is present.
        for i in 0..40 {
            let f = &files[i * files.len() / 40];
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(f, data.join(class).join(&name)).unwrap();
            names.push(name);
        }
    }
    let o = run(&["eval", data.to_str().unwrap(), "--groups", "utkface", "--json"], &tmp.path().join("cache"));
    let doc: Value = serde_json::from_str(&common::cli::ok(&o)).unwrap();
    assert_eq!(doc["metrics"]["count"], 80, "skipped: {}", doc["skipped"]);
    assert_eq!(doc["ungrouped"].as_array().unwrap().len(), 0, "every utk-dev name parses");
    check_groups(&doc, &expected_counts(&names));
    assert_eq!(doc["groups"]["gender"]["male"]["n"], 40);
    assert_eq!(doc["groups"]["gender"]["female"]["n"], 40);

    // With a split, the groups cover the photos the metrics cover: the same scope.
    let o = run(
        &["eval", data.to_str().unwrap(), "--split", "test", "--groups", "utkface", "--json"],
        &tmp.path().join("cache"),
    );
    let doc: Value = serde_json::from_str(&common::cli::ok(&o)).unwrap();
    assert_eq!(doc["scope"], "Only(Test)");
    let count = doc["metrics"]["count"].as_u64().unwrap();
    assert!(count > 0 && count < 80, "the test split is part of the folder: {count}");
    for column in ["age_band", "gender", "race"] {
        let sum: u64 = doc["groups"][column].as_object().unwrap().values().map(|g| g["n"].as_u64().unwrap()).sum();
        assert_eq!(sum, count, "{column}: the groups count the test split's photos only");
    }
}
