//! `pgcairn report --html` against a real PostgreSQL 15 archiving through `pgcairn
//! archive-push`: three backups with changes between them and a WAL gap (segments the archiver
//! reported done without storing), then the page rendered in headless Chromium. The browser's
//! own layout says every chart is there with one mark per snapshot (and one band per window,
//! one hatch per gap, as `info --json` counts them), inside its chart and not of zero size; its
//! screenshot says each chart is drawn in colour. The page needs no script: the test adds its
//! own to a copy, to read the layout out of the DOM.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::archiving::switch_wal_and_wait_archived;
use common::cairn::{Cairn, assert_code, assert_success, stderr, stdout, write_owned};
use common::pg::Cluster;
use tempfile::TempDir;

/// Reads, after the page has loaded, where the browser put each chart and its marks, and
/// writes it as JSON into a `<pre id="layout">` for `--dump-dom` to print.
const LAYOUT_PROBE: &str = r#"<script>
const out = { height: document.documentElement.scrollHeight, charts: {} };
for (const svg of document.querySelectorAll('svg.chart')) {
  const box = svg.getBoundingClientRect();
  const chart = {
    x: box.left + window.scrollX, y: box.top + window.scrollY,
    width: box.width, height: box.height,
    title: svg.querySelector('title').textContent,
    desc: svg.querySelector('desc').textContent,
    marks: {},
  };
  for (const kind of ['point', 'bar', 'window', 'gap', 'snap']) {
    const marks = svg.querySelectorAll('.' + kind);
    let laidOut = 0;
    for (const mark of marks) {
      const b = mark.getBoundingClientRect();
      if ((b.width > 0 || b.height > 0) && b.left >= box.left - 1 && b.right <= box.right + 1
          && b.top >= box.top - 1 && b.bottom <= box.bottom + 1) {
        laidOut++;
      }
    }
    chart.marks[kind] = [marks.length, laidOut];
  }
  out.charts[svg.id] = chart;
}
const pre = document.createElement('pre');
pre.id = 'layout';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"#;

/// Browser window width: the page is at most 1000 CSS pixels wide.
const WINDOW_WIDTH: u32 = 1100;

/// Debian's chromium; the test fails, saying how to install it, when it is missing.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the report test renders the page in it. \
             scripts/install-chromium.sh installs it (scripts/test.sh runs it)"
        )
    })
}

/// Headless Chromium with a profile of its own in `dir`, at most two minutes, whatever the
/// outcome.
fn run_chromium(dir: &Path, args: &[String]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[derive(Debug)]
struct ChartLayout {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    title: String,
    desc: String,
    /// Per kind of mark: how many there are, and how many the browser laid out inside the chart.
    marks: BTreeMap<String, (u64, u64)>,
}

/// The page's height and its charts as the browser laid them out, by chart id.
fn layout(page: &Path, dir: &Path) -> (f64, BTreeMap<String, ChartLayout>) {
    let html = std::fs::read_to_string(page).unwrap();
    let probed = dir.join("probed.html");
    std::fs::write(
        &probed,
        html.replace("</body>", &format!("{LAYOUT_PROBE}\n</body>")),
    )
    .unwrap();
    let out = run_chromium(
        dir,
        &[
            format!("--window-size={WINDOW_WIDTH},1000"),
            "--dump-dom".into(),
            format!("file://{}", probed.display()),
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split_once("<pre id=\"layout\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(json, _)| {
            json.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium printed no layout ({}):\nstdout:\n{dom}\nstderr:\n{}",
                out.status,
                stderr(&out)
            )
        });
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let charts = value["charts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, c)| {
            let marks = c["marks"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(kind, n)| {
                    (
                        kind.clone(),
                        (n[0].as_u64().unwrap(), n[1].as_u64().unwrap()),
                    )
                })
                .collect();
            let chart = ChartLayout {
                x: c["x"].as_f64().unwrap(),
                y: c["y"].as_f64().unwrap(),
                width: c["width"].as_f64().unwrap(),
                height: c["height"].as_f64().unwrap(),
                title: c["title"].as_str().unwrap().to_string(),
                desc: c["desc"].as_str().unwrap().to_string(),
                marks,
            };
            (id.clone(), chart)
        })
        .collect();
    (value["height"].as_f64().unwrap(), charts)
}

/// An RGB screenshot of the whole page.
struct Screenshot {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Screenshot {
    fn take(page: &Path, dir: &Path, height: f64) -> Screenshot {
        let png = dir.join("page.png");
        let out = run_chromium(
            dir,
            &[
                format!("--window-size={WINDOW_WIDTH},{}", height.ceil() as u32),
                format!("--screenshot={}", png.display()),
                format!("file://{}", page.display()),
            ],
        );
        assert!(
            png.is_file(),
            "chromium took no screenshot ({}):\n{}",
            out.status,
            stderr(&out)
        );
        let file = std::io::BufReader::new(std::fs::File::open(&png).unwrap());
        let mut decoder = png::Decoder::new(file);
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        assert!(channels >= 3, "a {:?} screenshot", info.color_type);
        let rgb = (0..info.height as usize)
            .flat_map(|y| {
                let row = &buf[y * info.line_size..(y + 1) * info.line_size];
                (0..info.width as usize).map(move |x| {
                    [
                        row[x * channels],
                        row[x * channels + 1],
                        row[x * channels + 2],
                    ]
                })
            })
            .collect();
        Screenshot {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    /// Pixels of a clearly coloured mark (not white, grey or black text) in a rectangle.
    fn coloured_pixels(&self, x: f64, y: f64, width: f64, height: f64) -> usize {
        let (x0, y0) = (x.max(0.0) as usize, y.max(0.0) as usize);
        let x1 = ((x + width) as usize).min(self.width);
        let y1 = ((y + height) as usize).min(self.height);
        (y0..y1)
            .flat_map(|py| (x0..x1).map(move |px| (px, py)))
            .filter(|(px, py)| {
                let [r, g, b] = self.rgb[py * self.width + px];
                r.max(g).max(b) - r.min(g).min(b) > 60
            })
            .count()
    }
}

/// `info --json`: windows and gaps over every cluster and timeline.
fn windows_and_gaps(cairn: &Cairn) -> (usize, usize) {
    let info: serde_json::Value = serde_json::from_str(&cairn.run_ok(&["info", "--json"])).unwrap();
    let timelines: Vec<&serde_json::Value> = info["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["timelines"].as_array().unwrap())
        .collect();
    let count = |key: &str| -> usize {
        timelines
            .iter()
            .map(|t| t[key].as_array().unwrap().len())
            .sum()
    };
    (count("windows"), count("gaps"))
}

#[test]
fn the_report_of_a_real_cluster_draws_every_chart_in_the_browser() {
    let cairn = Cairn::new();
    // While the flag file exists, the archive_command reports success without storing: the
    // segments it is handed are lost, a gap in the archive.
    let skip = cairn.path("skip-archiving");
    let conf = cairn.archiving_conf_with(&format!("test -e {} || ", skip.display()));
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::started_checksummed(15, &conf) else {
        return;
    };
    cluster.execute("CREATE TABLE t (id int PRIMARY KEY, v text)");
    cluster.execute(
        "INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 30000) g",
    );
    cairn.backup_json(&cluster, &["--cluster", "prod", "--tag", "first"]);

    cluster.execute("UPDATE t SET v = md5(v) WHERE id % 10 = 0");
    cluster.execute(
        "INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(30001, 40000) g",
    );
    // Tags are the user's words: the page must show them as text.
    cairn.backup_json(
        &cluster,
        &["--cluster", "prod", "--tag", "<b>nightly</b> & \"more\""],
    );

    write_owned(&skip, "");
    cluster.execute("INSERT INTO t SELECT g, 'lost' FROM generate_series(40001, 41000) g");
    switch_wal_and_wait_archived(&cluster);
    std::fs::remove_file(&skip).unwrap();
    cluster.execute("DELETE FROM t WHERE id % 7 = 0");
    switch_wal_and_wait_archived(&cluster);
    cairn.backup_json(&cluster, &["--cluster", "prod", "--tag", "after-the-gap"]);
    // WAL after the last backup extends its window.
    cluster.execute("INSERT INTO t SELECT g, 'late' FROM generate_series(50001, 51000) g");
    switch_wal_and_wait_archived(&cluster);

    let snapshots = cairn.snapshots().len();
    assert_eq!(snapshots, 3);
    let (windows, gaps) = windows_and_gaps(&cairn);
    assert_eq!(
        (windows, gaps),
        (2, 1),
        "the lost segment should split the window in two"
    );

    let page = cairn.path("report.html");
    let out = cairn.run(&[
        std::ffi::OsStr::new("report"),
        "--html".as_ref(),
        page.as_os_str(),
    ]);
    assert_success(&out, "report --html");
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "the page must not need a script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from outside"
    );
    assert!(html.contains("&lt;b&gt;nightly&lt;/b&gt; &amp; &quot;more&quot;"));
    assert!(!html.contains("<b>nightly"));
    assert!(
        html.contains(">prod TL 1</text>"),
        "the window row is named after the cluster"
    );

    let dir = TempDir::new().unwrap();
    let (height, charts) = layout(&page, dir.path());
    let expected: [(&str, &[(&str, u64)]); 4] = [
        ("chart-sizes", &[("point", 3)]),
        ("chart-added", &[("bar", 3)]),
        // Dedup, compression and overall after each snapshot.
        ("chart-ratios", &[("point", 9)]),
        (
            "chart-windows",
            &[
                ("window", windows as u64),
                ("gap", gaps as u64),
                ("snap", 3),
            ],
        ),
    ];
    assert_eq!(charts.len(), expected.len(), "charts: {:?}", charts.keys());
    for (id, marks) in expected {
        let chart = charts
            .get(id)
            .unwrap_or_else(|| panic!("no {id} in the page"));
        assert!(
            chart.width > 600.0 && chart.height > 60.0,
            "{id} laid out as {chart:?}"
        );
        assert!(
            !chart.title.is_empty() && !chart.desc.is_empty(),
            "{id}: {chart:?}"
        );
        for (kind, count) in marks {
            assert_eq!(
                chart.marks.get(*kind),
                Some(&(*count, *count)),
                "{id}: {kind} marks (there, laid out inside the chart)"
            );
        }
    }

    let shot = Screenshot::take(&page, dir.path(), height);
    for (id, chart) in &charts {
        let coloured = shot.coloured_pixels(chart.x, chart.y, chart.width, chart.height);
        assert!(
            coloured > 40,
            "{id} shows {coloured} coloured pixels: not drawn"
        );
    }
    // And the table below the charts: text, so dark pixels where it is.
    let table_top = charts.values().map(|c| c.y + c.height).fold(0.0, f64::max) as usize;
    let dark = shot.rgb[table_top.min(shot.rgb.len() / shot.width) * shot.width..]
        .iter()
        .filter(|[r, g, b]| r.max(g).max(b) < &100)
        .count();
    assert!(dark > 1000, "the snapshot table shows {dark} dark pixels");

    // To standard output, the same page.
    let out = cairn.run(&["report", "--html", "-"]);
    assert_success(&out, "report --html -");
    let printed = stdout(&out);
    assert!(printed.starts_with("<!DOCTYPE html>"));
    assert_eq!(printed.matches("<svg class=\"chart\"").count(), 4);
    assert!(
        stderr(&out).is_empty(),
        "notes on stderr with --html -: {}",
        stderr(&out)
    );

    // One cluster of several, by name; a name no snapshot has is a usage error.
    let out = cairn.run(&["report", "--cluster", "prod", "--html", "-"]);
    assert_success(&out, "report --cluster prod");
    assert_eq!(stdout(&out).matches("<svg class=\"chart\"").count(), 4);
    assert_code(
        &cairn.run(&["report", "--cluster", "staging", "--html", "-"]),
        2,
        "report --cluster of no snapshot",
    );
}

#[test]
fn an_empty_repository_gets_a_page_that_says_so_and_bad_places_fail_cleanly() {
    let cairn = Cairn::new();
    let page = cairn.path("empty.html");
    let out = cairn.run(&[
        std::ffi::OsStr::new("report"),
        "--html".as_ref(),
        page.as_os_str(),
    ]);
    assert_success(&out, "report of an empty repository");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("no snapshots yet"), "{html}");
    assert!(!html.contains("<svg"));

    // A directory that is not there: a local error naming it, and nothing written.
    let missing = cairn.path("no-such-dir").join("report.html");
    let out = cairn.run(&[
        std::ffi::OsStr::new("report"),
        "--html".as_ref(),
        missing.as_os_str(),
    ]);
    assert_code(&out, 13, "report into a missing directory");
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
    assert!(!cairn.path("no-such-dir").exists());

    // --html is required.
    assert_code(&cairn.run(&["report"]), 2, "report without --html");
}
