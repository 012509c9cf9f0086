//! The dashboard in a real browser: Debian's Chromium, headless, loads the page from `logstats
//! serve`, runs its script against the API and hands back the resulting DOM (`--dump-dom`) or a
//! screenshot; its log on stderr carries every console message of the page.
//!
//! Without `/usr/bin/chromium` these tests are skipped, unless `LOGSTATS_REQUIRE_BROWSER=1` (as in
//! CI), where its absence is a failure.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Lets the page run until it is idle: virtual time, which ends as soon as nothing is pending.
const SETTLE: &str = "--virtual-time-budget=10000";

/// How long one browser run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn the_dashboard_shows_one_bar_per_day_and_the_apis_numbers() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();
    let range = format!("from={}&to={}", site.from, site.to);
    let days: Vec<Value> = site.json(&format!("/customers/cust_1/stats?{range}"));
    let summary: Value = site.json(&format!("/customers/cust_1/stats/summary?{range}"));
    assert_eq!(days.len(), 10, "the generated log has data on every day");

    let page = browser.dump_dom(&site.url(&format!("/?customer=cust_1&{range}")));
    page.assert_console_is_silent();
    let dom = page.stdout.as_str();
    assert_eq!(body_state(dom), Some("ready"), "{dom}");
    assert_eq!(
        attribute_of_id(dom, "message", "data-kind"),
        None,
        "no message is shown"
    );

    let api_dates: Vec<&str> = days
        .iter()
        .map(|day| day["date"].as_str().unwrap())
        .collect();
    let chart = between(dom, r#"id="chart-requests""#, "</figure>").expect("the requests chart");
    let bar_dates: Vec<&str> = opening_tags(chart, "g")
        .into_iter()
        .filter(|tag| attribute(tag, "class") == Some("bar-day"))
        .map(|tag| attribute(tag, "data-date").expect("a bar has a date"))
        .collect();
    assert_eq!(
        bar_dates, api_dates,
        "one bar per day with data, in date order"
    );

    let row_dates: Vec<&str> = opening_tags(between(dom, "<tbody>", "</tbody>").unwrap(), "tr")
        .into_iter()
        .map(|tag| attribute(tag, "data-date").expect("a row has a date"))
        .collect();
    assert_eq!(row_dates, api_dates, "one table row per day, in date order");
    for day in &days {
        let date = day["date"].as_str().unwrap();
        for (field, format) in COLUMNS {
            assert_eq!(
                cell(dom, date, field),
                Some(format.show(&day[field]).as_str()),
                "the table's {field} on {date} (API day: {day})"
            );
        }
    }

    for (id, field, format, unit) in SUMMARY {
        let want = format!("{}{unit}", format.show(&summary[field]));
        assert_eq!(
            text_of_id(dom, id),
            Some(want.as_str()),
            "#{id} shows the summary's {field} ({summary})"
        );
    }
}

#[test]
fn the_range_by_resource_is_a_table_of_the_apis_numbers_busiest_first() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();
    let range = format!("from={}&to={}", site.from, site.to);
    let resources: Vec<Value> = site.json(&format!(
        "/customers/cust_1/stats/summary?{range}&group_by=resource"
    ));
    assert!(resources.len() >= 2, "the generator logs several paths");

    let page = browser.dump_dom(&site.url(&format!("/?customer=cust_1&{range}")));
    page.assert_console_is_silent();
    let dom = page.stdout.as_str();
    let table = between(dom, r#"<table id="resources">"#, "</table>").expect("the table");
    let shown: Vec<&str> = opening_tags(between(table, "<tbody>", "</tbody>").unwrap(), "tr")
        .into_iter()
        .map(|tag| attribute(tag, "data-resource").expect("a row has a resource"))
        .collect();
    let mut busiest = resources.clone();
    busiest.sort_by_key(|r| std::cmp::Reverse(r["total_requests"].as_u64().unwrap()));
    let want: Vec<&str> = busiest
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert_eq!(shown, want, "one row per resource, the busiest first");

    let failed: f64 = resources
        .iter()
        .map(|r| r["failed_requests"].as_f64().unwrap())
        .sum();
    for resource in &resources {
        let name = resource["resource"].as_str().unwrap();
        let row = between(table, &format!("<tr data-resource=\"{name}\">"), "</tr>").unwrap();
        let shown = |field: &str| between(row, &format!("<td data-field=\"{field}\">"), "<");
        for (field, format) in RESOURCE_COLUMNS {
            assert_eq!(
                shown(field),
                Some(format.show(&resource[field]).as_str()),
                "{name}: {field}"
            );
        }
        let own = resource["failed_requests"].as_f64().unwrap();
        let rate = 100.0 * own / resource["total_requests"].as_f64().unwrap();
        let share = 100.0 * own / failed;
        assert_eq!(
            shown("failure_rate"),
            Some(en_us(rate, 2).as_str()),
            "{name}"
        );
        assert_eq!(
            shown("failure_share"),
            Some(en_us(share, 2).as_str()),
            "{name}"
        );
    }
}

#[test]
fn the_sla_panel_shows_the_apis_numbers_for_its_month_and_objective() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();
    // The generated days end on 2024-10-02: the panel opens on the customer's last month, with
    // the default objective; the address can name another month and objective.
    for (query, month, objective) in [
        ("", "2024-10", "99.9"),
        ("&month=2024-09&objective=50", "2024-09", "50"),
    ] {
        let sla: Value = site.json(&format!(
            "/customers/cust_1/sla?month={month}&objective={objective}"
        ));
        assert!(sla["total_requests"].as_u64().unwrap() > 0, "{sla}");
        let page = browser.dump_dom(&site.url(&format!("/?customer=cust_1{query}")));
        page.assert_console_is_silent();
        let dom = page.stdout.as_str();
        assert_eq!(
            attribute_of_id(dom, "sla", "data-state"),
            Some("ready"),
            "{dom}"
        );
        assert_eq!(
            attribute_of_id(dom, "sla", "hidden"),
            None,
            "the panel is shown"
        );
        let number = |field: &str| sla[field].as_f64().unwrap();
        let budget = number("error_budget_requests");
        let worst = &sla["worst_day"];
        let breached = if sla["breached"].as_bool().unwrap() {
            "Yes"
        } else {
            "No"
        };
        let expected = [
            (
                "sla-availability",
                format!("{} %", en_us(number("availability_percentage"), 2)),
            ),
            (
                "sla-uptime",
                format!("{} %", en_us(number("uptime_percentage"), 2)),
            ),
            ("sla-budget", format!("{} requests", en_us(budget, 2))),
            (
                "sla-used",
                format!(
                    "{} %",
                    en_us(number("failed_by_server") / budget * 100.0, 2)
                ),
            ),
            (
                "sla-remaining",
                format!(
                    "{} requests",
                    signed(number("error_budget_remaining_requests"), 2)
                ),
            ),
            ("sla-breached", breached.to_string()),
            (
                "sla-worst",
                format!(
                    "{} · {} %",
                    worst["date"].as_str().unwrap(),
                    en_us(worst["availability_percentage"].as_f64().unwrap(), 2)
                ),
            ),
        ];
        for (id, want) in expected {
            assert_eq!(
                text_of_id(dom, id),
                Some(want.as_str()),
                "#{id} for {month} at {objective} (API: {sla})"
            );
        }
    }

    // An objective the API refuses: the panel says so, with the status.
    let page = browser.dump_dom(&site.url("/?customer=cust_1&month=2024-09&objective=100"));
    let dom = page.stdout.as_str();
    assert_eq!(
        attribute_of_id(dom, "sla", "data-state"),
        Some("error"),
        "{dom}"
    );
    assert!(
        text_of_id(dom, "sla-message")
            .is_some_and(|text| text.contains("422") && text.contains("objective")),
        "{dom}"
    );
}

/// `value` as the page shows a number that may be negative (`Intl.NumberFormat('en-US')`).
fn signed(value: f64, decimals: usize) -> String {
    if value < 0.0 {
        format!("-{}", en_us(-value, decimals))
    } else {
        en_us(value, decimals)
    }
}

#[test]
fn an_unknown_customer_gets_a_message_instead_of_charts() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();

    let page = browser.dump_dom(&site.url("/?customer=nobody"));
    page.assert_console_is_silent();
    let dom = page.stdout.as_str();
    assert_eq!(body_state(dom), Some("ready"), "{dom}");
    assert_eq!(
        attribute_of_id(dom, "message", "data-kind"),
        Some("unknown-customer"),
        "{dom}"
    );
    assert!(
        text_of_id(dom, "message").is_some_and(|text| text.contains("nobody")),
        "the message names the customer: {dom}"
    );
    assert_eq!(
        attribute_of_id(dom, "content", "hidden"),
        Some(""),
        "no charts or table"
    );
}

#[test]
fn an_invalid_date_in_the_address_shows_the_apis_error() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();

    // The page passes the dates on as they are; the API answers 422 (which the console reports as
    // a failed load, so the console is not checked here).
    let page = browser.dump_dom(&site.url("/?customer=cust_1&from=2024-13-01&to=2024-10-02"));
    let dom = page.stdout.as_str();
    assert_eq!(body_state(dom), Some("error"), "{dom}");
    assert_eq!(
        attribute_of_id(dom, "message", "data-kind"),
        Some("api-error"),
        "{dom}"
    );
    assert!(
        text_of_id(dom, "message").is_some_and(|text| text.contains("422")),
        "the message shows the status: {dom}"
    );
}

#[test]
fn a_screenshot_of_the_dashboard_is_written_to_target() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);

    let url = site.url(&format!(
        "/?customer=cust_1&from={}&to={}",
        site.from, site.to
    ));
    browser.screenshot(&url, &path).assert_console_is_silent();
    let picture = Picture::read(&path);
    assert_eq!(
        (picture.width, picture.height),
        (1280, 1800),
        "the window's size"
    );
    // The charts are drawn: their series' colours (app.js) cover visible areas of the picture.
    for (series, colour) in [("2xx", [0x2f, 0x9e, 0x44]), ("p99", [0xae, 0x3e, 0xc9])] {
        let pixels = picture.pixels_near(colour);
        assert!(
            pixels >= 200,
            "the {series} series is drawn: {pixels} pixels of its colour in {}",
            path.display()
        );
    }
    eprintln!("dashboard screenshot: {}", path.display());
}

/// A screenshot, decoded to 8-bit RGB(A).
struct Picture {
    width: u32,
    height: u32,
    channels: usize,
    bytes: Vec<u8>,
}

impl Picture {
    fn read(path: &Path) -> Picture {
        let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG picture");
        let mut bytes = vec![
            0;
            reader
                .output_buffer_size()
                .expect("a picture of a sane size")
        ];
        let frame = reader
            .next_frame(&mut bytes)
            .expect("a decodable PNG picture");
        bytes.truncate(frame.buffer_size());
        let channels = frame.color_type.samples();
        assert!(
            channels >= 3,
            "a colour picture, not {:?}",
            frame.color_type
        );
        Picture {
            width: frame.width,
            height: frame.height,
            channels,
            bytes,
        }
    }

    /// Pixels within a small distance of `colour` (anti-aliased edges shade a line's colour).
    fn pixels_near(&self, colour: [u8; 3]) -> usize {
        self.bytes
            .chunks_exact(self.channels)
            .filter(|pixel| (0..3).all(|c| pixel[c].abs_diff(colour[c]) <= 12))
            .count()
    }
}

#[test]
fn a_customer_past_the_first_page_is_found_and_the_picker_never_loads_everyone() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log_of(db.dir(), "access.log", 6_000, 9, 200);
    ingest_paths(&db.url, &[&log], 2);
    let server = Server::start(&db.url, &[]);
    let first = first_generated_day();
    let range = format!("from={first}&to={}", first.plus(9));

    // By id, cust_99 comes after cust_1..cust_98 and cust_100..cust_199: far past the first page.
    let page = browser.dump_dom(&format!(
        "http://{}/?customer=cust_99&{range}",
        server.address
    ));
    page.assert_console_is_silent();
    let dom = page.stdout.as_str();
    assert_eq!(body_state(dom), Some("ready"), "{dom}");
    assert_eq!(attribute_of_id(dom, "message", "data-kind"), None, "{dom}");
    let choices = opening_tags(between(dom, "<datalist", "</datalist>").unwrap(), "option").len();
    assert!((1..=50).contains(&choices), "{choices} choices");

    let page = browser.dump_dom(&format!(
        "http://{}/?customer=cust_999&{range}",
        server.address
    ));
    assert_eq!(
        attribute_of_id(&page.stdout, "message", "data-kind"),
        Some("unknown-customer"),
        "{}",
        page.stdout
    );
}

#[test]
fn while_the_api_has_not_answered_the_page_says_what_it_is_loading() {
    let Some(browser) = Browser::find() else {
        return;
    };
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let log = generated_log(db.dir(), "access.log", 1_000, 7);
    ingest_paths(&db.url, &[&log], 1);
    let server = Server::start(&db.url, &["--request-timeout", "300"]);

    // Every read of the statistics waits behind this lock until the page has been captured.
    let mut lock = block_on(<sqlx::PgConnection as sqlx::Connection>::connect(&db.url)).unwrap();
    block_on(
        sqlx::raw_sql("BEGIN; LOCK TABLE resource_statistics_by_day IN ACCESS EXCLUSIVE MODE")
            .execute(&mut lock),
    )
    .unwrap();

    let url = format!("http://{}/?customer=cust_1", server.address);
    let page = browser.dump_dom_at_load(&url);
    page.assert_console_is_silent();
    let dom = page.stdout.as_str();
    assert_eq!(body_state(dom), Some("loading"), "{dom}");
    assert_eq!(
        text_of_id(dom, "loading-text"),
        Some("Loading the customer list…"),
        "{dom}"
    );
    assert_eq!(attribute_of_id(dom, "loading", "hidden"), None, "{dom}");
    block_on(sqlx::raw_sql("ROLLBACK").execute(&mut lock)).unwrap();
}

#[test]
fn csv_cells_that_a_spreadsheet_would_run_as_formulas_are_defused() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let site = Site::start();
    // The page's own script, loaded into an empty page, its CSV function called on hostile ids.
    let cells =
        r#"["=1+2","+1","-1","@SUM(A1)","\tx","\rx","plain","a,b","say \"hi\"",5,1.5,null]"#;
    let page = format!(
        "data:text/html,<script src=\"{}\"></script><script>document.write('<pre id=\"o' + 'ut\">' + \
         encodeURIComponent(JSON.stringify({cells}.map(csvCell))) + '</pre>')</script>",
        site.url("/dashboard/app.js")
    );
    // A data: page may load a script from the loopback server only with Chromium's local network
    // access checks off.
    let local = "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests";
    let run = browser.run(&["--dump-dom", SETTLE, local], &page);
    // (The script's own text spells the id in two pieces, so only the written element matches.)
    let out = text_of_id(&run.stdout, "out")
        .unwrap_or_else(|| panic!("the page wrote its output: {}", run.stdout));
    let cells: Vec<String> = serde_json::from_str(&percent_decoded(out)).unwrap();
    assert_eq!(
        cells,
        [
            "\"'=1+2\"",
            "\"'+1\"",
            "\"'-1\"",
            "\"'@SUM(A1)\"",
            "\"'\tx\"",
            "\"'\rx\"",
            "plain",
            "\"a,b\"",
            "\"say \"\"hi\"\"\"",
            "5",
            "1.5",
            "",
        ]
    );
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The other tests trust a silent console; this one shows that errors do reach it.
#[test]
fn the_console_check_sees_errors_and_uncaught_exceptions() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let page = browser
        .dump_dom("data:text/html,<script>console.error('planted error'); null.planted;</script>");
    let console = page.console.join("\n");
    assert!(
        console.contains("planted error"),
        "console.error is seen: {console}"
    );
    assert!(
        console.contains("Uncaught TypeError"),
        "an uncaught exception is seen: {console}"
    );
}

#[test]
fn numbers_are_formatted_like_the_pages_intl_number_format() {
    assert_eq!(en_us(0.0, 0), "0");
    assert_eq!(en_us(1451.0, 0), "1,451");
    assert_eq!(en_us(1234567.0, 0), "1,234,567");
    assert_eq!(en_us(87.5, 2), "87.50");
    assert_eq!(en_us(2.4772624491231596, 2), "2.48");
    assert_eq!(
        en_us(1.0625, 3),
        "1.063",
        "exact ties round away from zero, not to even"
    );
    assert_eq!(
        en_us(0.0005, 3),
        "0.001",
        "0.0005 is a bit more than a tie as a double"
    );
    assert_eq!(en_us(0.0625, 3), "0.063");
    assert_eq!(en_us(999.9996, 3), "1,000.000");
}

// ---------- what the page shows, and how ----------

/// The page's number formats (`fmt` in app.js).
#[derive(Clone, Copy)]
enum Format {
    /// Dates as they are.
    Text,
    /// Integers with thousands separators.
    Int,
    /// Percentages: 2 decimals.
    Percent,
    /// Seconds: 3 decimals.
    Seconds,
}

impl Format {
    fn show(self, value: &Value) -> String {
        let number = || {
            value
                .as_f64()
                .unwrap_or_else(|| panic!("a number, not {value}"))
        };
        match self {
            Format::Text => value.as_str().expect("a string").to_string(),
            Format::Int => en_us(number(), 0),
            Format::Percent => en_us(number(), 2),
            Format::Seconds => en_us(number(), 3),
        }
    }
}

/// The table's columns (`COLUMNS` in app.js): the JSON field and its format.
const COLUMNS: [(&str, Format); 17] = [
    ("date", Format::Text),
    ("total_requests", Format::Int),
    ("success_requests", Format::Int),
    ("failed_requests", Format::Int),
    ("status_1xx", Format::Int),
    ("status_2xx", Format::Int),
    ("status_3xx", Format::Int),
    ("status_4xx", Format::Int),
    ("status_5xx", Format::Int),
    ("uptime_percentage", Format::Percent),
    ("availability_percentage", Format::Percent),
    ("duration_mean", Format::Seconds),
    ("duration_p50", Format::Seconds),
    ("duration_p90", Format::Seconds),
    ("duration_p95", Format::Seconds),
    ("duration_p99", Format::Seconds),
    ("duration_max", Format::Seconds),
];

/// The columns of the table by resource (`RESOURCE_COLUMNS` in app.js) that show an API field
/// as it is (the failure rate and share are computed by the page).
const RESOURCE_COLUMNS: [(&str, Format); 8] = [
    ("resource", Format::Text),
    ("total_requests", Format::Int),
    ("failed_requests", Format::Int),
    ("status_5xx", Format::Int),
    ("availability_percentage", Format::Percent),
    ("uptime_percentage", Format::Percent),
    ("duration_p50", Format::Seconds),
    ("duration_p99", Format::Seconds),
];

/// The summary cards: element id, JSON field of the summary, format and unit.
const SUMMARY: [(&str, &str, Format, &str); 5] = [
    ("sum-total", "total_requests", Format::Int, ""),
    ("sum-uptime", "uptime_percentage", Format::Percent, " %"),
    (
        "sum-availability",
        "availability_percentage",
        Format::Percent,
        " %",
    ),
    ("sum-p50", "duration_p50", Format::Seconds, " s"),
    ("sum-p99", "duration_p99", Format::Seconds, " s"),
];

/// `value` as `Intl.NumberFormat('en-US')` shows it with exactly `decimals` decimals: thousands
/// separated, rounded half away from zero on the exact value of the double. (Rust's `{:.3}` rounds
/// exact ties to even: a mean of 1.0625 s would read 1.062 where the page shows 1.063.)
fn en_us(value: f64, decimals: usize) -> String {
    assert!(
        value.is_finite() && value >= 0.0,
        "the page shows no negative number: {value}"
    );
    // A double's exact decimal expansion has at most 1074 decimals.
    let exact = format!("{value:.1074}");
    let (whole, fraction) = exact.split_once('.').unwrap();
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes().take(decimals))
        .collect();
    if fraction.as_bytes()[decimals] >= b'5' {
        let mut carry = true;
        for digit in digits.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                carry = false;
                break;
            }
        }
        if carry {
            digits.insert(0, b'1');
        }
    }
    let (whole, fraction) = digits.split_at(digits.len() - decimals);
    let mut shown = String::new();
    for (i, &digit) in whole.iter().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            shown.push(',');
        }
        shown.push(digit as char);
    }
    if decimals > 0 {
        shown.push('.');
        shown.extend(fraction.iter().map(|&digit| digit as char));
    }
    shown
}

// ---------- the server ----------

/// `logstats serve` over a generated log of 20 customers and 10 days, ~150 requests per customer
/// and day (so a customer's range total needs a thousands separator).
struct Site {
    server: Server,
    from: String,
    to: String,
    _db: TestDb,
}

impl Site {
    fn start() -> Site {
        let db = TestDb::new(Backend::Sqlite);
        let log = generated_log(db.dir(), "access.log", 30_000, 7);
        ingest_paths(&db.url, &[&log], 2);
        let first = first_generated_day();
        Site {
            server: Server::start(&db.url, &[]),
            from: first.to_string(),
            to: first.plus(9).to_string(),
            _db: db,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.address)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.server.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

// ---------- the browser ----------

struct Browser;

/// What one browser run printed.
struct Run {
    /// The DOM with `--dump-dom`.
    stdout: String,
    /// The page's console messages (log, warn, error alike: Chromium logs them all at INFO),
    /// uncaught exceptions and failed loads.
    console: Vec<String>,
}

impl Run {
    /// The page writes nothing to the console when all goes well, so any message is a failure.
    #[track_caller]
    fn assert_console_is_silent(&self) {
        assert!(
            self.console.is_empty(),
            "the browser console has messages:\n{}",
            self.console.join("\n")
        );
    }
}

impl Browser {
    fn find() -> Option<Browser> {
        if Path::new(CHROMIUM).exists() {
            Some(Browser)
        } else if std::env::var("LOGSTATS_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("a browser is required (LOGSTATS_REQUIRE_BROWSER=1) but {CHROMIUM} is missing");
        } else {
            eprintln!("{CHROMIUM} not found: skipping the browser test");
            None
        }
    }

    /// The DOM once the page is idle (10 s of virtual time, which ends as soon as nothing is
    /// pending).
    fn dump_dom(&self, url: &str) -> Run {
        self.run(&["--dump-dom", SETTLE], url)
    }

    /// The DOM as soon as the page has loaded, whatever its requests are still waiting for.
    fn dump_dom_at_load(&self, url: &str) -> Run {
        self.run(&["--dump-dom"], url)
    }

    fn screenshot(&self, url: &str, path: &Path) -> Run {
        let screenshot = format!("--screenshot={}", path.display());
        self.run(&[&screenshot, SETTLE, "--window-size=1280,1800"], url)
    }

    /// Runs headless Chromium on `url` with a fresh profile, killed after [`BROWSER_TIMEOUT`].
    fn run(&self, action: &[&str], url: &str) -> Run {
        let scratch = tempfile::tempdir().expect("a temp dir");
        let (stdout_path, stderr_path) = (scratch.path().join("out"), scratch.path().join("err"));
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.path().join("profile").display()
            ))
            .args(action)
            .arg(url)
            .stdin(Stdio::null())
            // Files, not pipes: Chromium's helper processes may outlive a killed browser.
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(&stderr_path).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > BROWSER_TIMEOUT {
                // The whole process group: the browser and its helpers.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{CHROMIUM} did not finish within {BROWSER_TIMEOUT:?} on {url}; its log:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stderr = std::fs::read_to_string(&stderr_path).unwrap();
        assert!(
            status.success(),
            "{CHROMIUM} failed ({status}) on {url}:\n{stderr}"
        );
        Run {
            stdout: std::fs::read_to_string(&stdout_path).unwrap(),
            // e.g. `[29228:29228:1127/221312.516694:INFO:CONSOLE:4] "an error 42", source: …`
            // (older versions: `INFO:CONSOLE(4)`).
            console: stderr
                .lines()
                .filter(|line| line.to_ascii_lowercase().contains(":console"))
                .map(str::to_string)
                .collect(),
        }
    }
}

// ---------- reading the serialised DOM ----------

/// The text after the first `start`, up to the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Every opening tag `<name …>` in `html`, in order, brackets included.
fn opening_tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    html.match_indices(&open)
        .map(|(at, _)| &html[at..])
        .filter(|tag| matches!(tag.as_bytes().get(open.len()), Some(b' ' | b'>' | b'/')))
        .map(|tag| &tag[..=tag.find('>').unwrap()])
        .collect()
}

/// The value of an attribute of one tag (Chromium writes every value in double quotes).
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    between(tag, &format!(" {name}=\""), "\"")
}

/// The opening tag of the element with this id, and all that follows it.
fn element_of_id<'a>(html: &'a str, id: &str) -> Option<(&'a str, &'a str)> {
    let at = html.find(&format!(" id=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')? + 1;
    Some((&html[start..end], &html[end..]))
}

fn attribute_of_id<'a>(html: &'a str, id: &str, name: &str) -> Option<&'a str> {
    attribute(element_of_id(html, id)?.0, name)
}

/// The text of the element with this id, up to its first child tag.
fn text_of_id<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let (_, after) = element_of_id(html, id)?;
    Some(&after[..after.find('<')?])
}

fn body_state(html: &str) -> Option<&str> {
    attribute(opening_tags(html, "body").first()?, "data-state")
}

/// The text of the table cell of `field` on `date`.
fn cell<'a>(html: &'a str, date: &str, field: &str) -> Option<&'a str> {
    let row = between(html, &format!("<tr data-date=\"{date}\">"), "</tr>")?;
    between(row, &format!("<td data-field=\"{field}\">"), "<")
}
