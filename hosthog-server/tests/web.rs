//! The web calendar in a real Chromium (Debian's `chromium` and
//! `chromium-driver`, through WebDriver), against a real PostgreSQL,
//! hosthog-server and a hosthogd that follows it: sign in with the link
//! `hosthog web` prints, book two hosts from the page, bob sees the
//! conflict, extend and release; the booking is on the synced host; a
//! hostile comment stays text; forms without the CSRF token or from
//! another origin are refused; the iCal feeds parse in Python's
//! `icalendar` without a complaint. Takes the screenshots of docs/web.md
//! and checks them; writes them only into `$HOSTHOG_SCREENSHOTS`.
//! Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hosthog_tests::fleet::{Auth, FleetHost, FleetServer, binary, free_port, now, within};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const CURL: &str = "/usr/bin/curl";

/// chromedriver on 127.0.0.1, stopped by pid on drop; its browsers'
/// profiles in a temporary directory, removed then.
struct Driver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
    /// How many browsers were started (each gets a profile of its own).
    browsers: std::cell::Cell<u32>,
}

impl Driver {
    fn start() -> Driver {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: install Debian's {package} (scripts/setup-dev does)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            // The browser's zone: the pages then stay in UTC, as asked.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let profiles = tempfile::Builder::new()
            .prefix("hosthog-web-chromium.")
            .tempdir()
            .expect("a directory for the browsers' profiles");
        let driver = Driver {
            child,
            url,
            profiles,
            browsers: std::cell::Cell::new(0),
        };
        within(Duration::from_secs(20), "chromedriver listening", || {
            ureq::get(&format!("{}/status", driver.url)).call().is_ok()
        });
        driver
    }

    /// A browser of its own (its own cookies).
    fn browser(&self) -> Browser {
        self.browsers.set(self.browsers.get() + 1);
        let profile = self
            .profiles
            .path()
            .join(format!("browser{}", self.browsers.get()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--lang=en-US", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let answer = post(&format!("{}/session", self.url), &caps);
        let id = answer["value"]["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        Browser {
            base: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(url: &str, body: &Value) -> Value {
    let mut response = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(body)
        .unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
    response.body_mut().read_json().expect("WebDriver's JSON")
}

fn get(url: &str) -> Value {
    let mut response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
    response.body_mut().read_json().expect("WebDriver's JSON")
}

/// One WebDriver session.
struct Browser {
    base: String,
}

impl Browser {
    fn go(&self, url: &str) {
        let r = post(&format!("{}/url", self.base), &json!({ "url": url }));
        assert!(r["value"].is_null(), "navigate to {url}: {r}");
    }

    fn url(&self) -> String {
        get(&format!("{}/url", self.base))["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn run(&self, script: &str, args: Value) -> Value {
        let r = post(
            &format!("{}/execute/sync", self.base),
            &json!({ "script": script, "args": args }),
        );
        assert!(r["value"].get("error").is_none(), "{script}: {r}");
        r["value"].clone()
    }

    /// The element `css` names, waiting up to 10 s for it (a form's answer
    /// may still be loading).
    fn find(&self, css: &str) -> String {
        let started = Instant::now();
        let mut r = Value::Null;
        while started.elapsed() < Duration::from_secs(10) {
            r = post(
                &format!("{}/element", self.base),
                &json!({ "using": "css selector", "value": css }),
            );
            if r["value"].get("error").is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if r["value"].get("error").is_some() {
            let page = self.run("return document.body.innerText;", json!([]));
            panic!(
                "no element {css} on {}: {}",
                self.url(),
                page.as_str().unwrap_or_default()
            );
        }
        r["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {r}"))
            .to_string()
    }

    /// Clicks `css` (a button that submits a form) and waits for the
    /// answer's page to replace this one.
    fn click(&self, css: &str) {
        let page = self.find("html");
        let id = self.find(css);
        let r = post(&format!("{}/element/{id}/click", self.base), &json!({}));
        assert!(r["value"].is_null(), "click {css}: {r}");
        within(Duration::from_secs(10), "the next page", || {
            let r = get(&format!("{}/element/{page}/name", self.base));
            r["value"].get("error").is_some()
        });
        within(Duration::from_secs(10), "the page loaded", || {
            self.run("return document.readyState;", json!([])) == "complete"
        });
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        let r = get(&format!("{}/element/{id}/text", self.base));
        r["value"]
            .as_str()
            .unwrap_or_else(|| panic!("text of {css}: {r}"))
            .to_string()
    }

    fn body(&self) -> String {
        self.text("body")
    }

    fn set(&self, css: &str, value: &str) {
        self.run(
            "document.querySelector(arguments[0]).value = arguments[1];",
            json!([css, value]),
        );
    }

    /// Takes a screenshot of the page, and checks it is a whole PNG of
    /// the window's size with something drawn on it. Written to
    /// `$HOSTHOG_SCREENSHOTS/NAME` only when that is set (docs/web.md):
    /// the committed ones in docs/screenshots are not rewritten by every
    /// run.
    fn screenshot(&self, name: &str) {
        let r = get(&format!("{}/screenshot", self.base));
        let png = base64_decode(r["value"].as_str().expect("a screenshot"));
        let window = self.run("return [window.innerWidth, window.innerHeight];", json!([]));
        let window = (
            window[0].as_u64().unwrap() as u32,
            window[1].as_u64().unwrap() as u32,
        );
        assert_eq!(png_size(&png), Ok(window), "{name}");
        // A page with text and bars on it; a blank window of this size
        // compresses to a few KiB.
        assert!(
            png.len() > 10_000,
            "{name} is nearly empty: {} bytes",
            png.len()
        );
        if let Some(dir) = screenshots_dir() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), png).unwrap();
        }
    }

    fn cookie(&self, name: &str) -> Value {
        get(&format!("{}/cookie/{name}", self.base))["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.base).call();
    }
}

/// Where to write the screenshots: `HOSTHOG_SCREENSHOTS`, a relative path
/// taken from the top of the checkout; none when it is not set.
fn screenshots_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HOSTHOG_SCREENSHOTS").filter(|d| !d.is_empty())?;
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir))
}

/// The width and height of a PNG that is whole: the signature, the IHDR
/// chunk first, the IEND chunk last.
fn png_size(png: &[u8]) -> Result<(u32, u32), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    const IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";
    if !png.starts_with(SIGNATURE) {
        return Err("no PNG signature".into());
    }
    if png.get(8..16) != Some(b"\0\0\0\x0dIHDR".as_slice()) {
        return Err("the first chunk is not IHDR".into());
    }
    if !png.ends_with(IEND) {
        return Err("cut short: no IEND chunk at the end".into());
    }
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    Ok((number(16), number(20)))
}

#[test]
fn png_size_reads_whole_pngs_only() {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(1400u32.to_be_bytes());
    png.extend(857u32.to_be_bytes());
    png.extend(b"\x08\x02\0\0\0\0\0\0\0");
    png.extend(b"\0\0\0\0IEND\xae\x42\x60\x82");
    assert_eq!(png_size(&png), Ok((1400, 857)));
    assert_eq!(
        png_size(&png[..png.len() - 1]),
        Err("cut short: no IEND chunk at the end".into())
    );
    assert_eq!(png_size(b"GIF89a"), Err("no PNG signature".into()));
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for b in text
        .bytes()
        .filter(|b| *b != b'=' && !b.is_ascii_whitespace())
    {
        let v = ALPHABET.iter().position(|a| *a == b).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `hosthog ARGS` on `host` (as root); stdout, failing on an error.
fn hosthog(host: &FleetHost, args: &[&str]) -> String {
    let out = Command::new(binary("hosthog"))
        .arg("--socket")
        .arg(host.dir.path().join("hosthogd.sock"))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hosthog {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A form POST with curl: the status and the body.
fn curl_post(
    server: &FleetServer,
    path: &str,
    cookie: &str,
    origin: &str,
    form: &str,
) -> (u16, String) {
    let out = Command::new(CURL)
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .arg("--cacert")
        .arg(server.ca_dir().join("ca.pem"))
        .arg("-H")
        .arg(format!("Cookie: __Host-hh_session={cookie}"))
        .arg("-H")
        .arg(format!("Origin: {origin}"))
        .arg("--data-binary")
        .arg(form)
        .arg(format!("{}{path}", server.address()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

fn curl_get(server: &FleetServer, url: &str) -> String {
    let out = Command::new(CURL)
        .args(["-sS", "-f"])
        .arg("--cacert")
        .arg(server.ca_dir().join("ca.pem"))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python's `icalendar`, as Debian packages it (python3-icalendar, which
/// scripts/setup-dev installs): an independent parser that needs no
/// network at test time.
fn icalendar_python(_dir: &Path) -> PathBuf {
    let python = PathBuf::from("/usr/bin/python3");
    let out = Command::new(&python)
        .args([
            "-W",
            "error",
            "-c",
            "import icalendar; print(icalendar.__version__)",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Python's icalendar is missing: install Debian's python3-icalendar ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "feeds parsed by icalendar {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    python
}

const PARSE: &str = r#"
import json, sys, warnings
warnings.simplefilter("error")
import icalendar
with open(sys.argv[1], "rb") as f:
    data = f.read()
cal = icalendar.Calendar.from_ical(data)
events = []
problems = list(cal.errors)
for c in cal.walk():
    problems.extend(c.errors)
for e in cal.walk("VEVENT"):
    events.append({
        "uid": str(e["UID"]), "sequence": int(e["SEQUENCE"]), "status": str(e["STATUS"]),
        "location": str(e["LOCATION"]), "summary": str(e["SUMMARY"]),
        "description": str(e["DESCRIPTION"]),
        "start": int(e.decoded("DTSTART").timestamp()), "end": int(e.decoded("DTEND").timestamp()),
        "utc": e.decoded("DTSTART").tzinfo is not None,
    })
print(json.dumps({"problems": [str(p) for p in problems], "events": events}))
"#;

fn parse_feed(python: &Path, dir: &Path, name: &str, ics: &str) -> Value {
    let file = dir.join(name);
    std::fs::write(&file, ics).unwrap();
    let script = dir.join("parse.py");
    std::fs::write(&script, PARSE).unwrap();
    let out = Command::new(python)
        .args(["-W", "error"])
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "icalendar on {name}: {}\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"], json!([]), "{name}: {ics}");
    v
}

const HOSTILE: &str = "<script>alert(1)</script> \"><img src=x onerror=alert(2)>";

#[test]
fn book_from_the_browser_and_follow_it_everywhere() {
    let mut server = FleetServer::start();
    let gpu1_bundle = server.add_host("gpu1");
    let gpu2_bundle = server.add_host("gpu2");
    server.serve();
    let gpu1 = FleetHost::start(&server, "gpu1", &gpu1_bundle);
    gpu1.wait_synced();
    let temp = tempfile::tempdir().unwrap();
    let python = icalendar_python(temp.path());

    // `hosthog web` on a synced host: a one-time link to this server.
    let out = hosthog(&gpu1, &["web"]);
    let link = out.lines().next().unwrap().to_string();
    assert!(
        link.starts_with(&format!("{}/web/signin/", server.address())),
        "{out}"
    );
    assert!(out.contains("signs you in once"), "{out}");

    let driver = Driver::start();
    let root = driver.browser();
    root.go(&link);
    root.click("#signin");
    assert_eq!(root.url(), format!("{}/web/", server.address()));
    assert!(root.body().contains("root"), "{}", root.body());
    // Used: the same link signs nobody in again.
    let again = driver.browser();
    again.go(&link);
    again.click("#signin");
    assert!(
        again.body().contains("This sign-in link was used already"),
        "{}",
        again.body()
    );
    drop(again);

    // Book gpu1 and gpu2 from the page, tomorrow 10:00-12:00 UTC.
    let today = jiff::Timestamp::from_second(now())
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.tomorrow().unwrap();
    root.go(&format!("{}/web/book?tz=UTC", server.address()));
    root.run(
        "for (const o of document.querySelectorAll('#hosts option')) o.selected = true;",
        json!([]),
    );
    root.set("#start", &format!("{tomorrow}T10:00"));
    root.set("#end", &format!("{tomorrow}T12:00"));
    // A right-to-left override is refused by the rules, saying why.
    root.set("#comment", "rtl \u{202E}evil");
    root.click("#submit");
    let error = root.text("#error");
    assert_eq!(
        error,
        "the comment contains the control character \\u{202e}; use printable text only Nothing was changed."
    );
    root.set("#comment", HOSTILE);
    root.screenshot("booking-form.png");
    root.click("#submit");
    let body = root.body();
    assert!(body.contains("Booked "), "{body}");
    assert!(body.contains("on gpu1, gpu2."), "{body}");
    let id = server
        .pg
        .psql(
            "fleet",
            "SELECT lpad(to_hex(id), 16, '0') FROM reservation WHERE owner = 'root'",
        )
        .trim()
        .to_string();
    assert_eq!(id.len(), 16, "one reservation of root's: {id}");
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT h.name FROM claim c JOIN host h ON h.id = c.host ORDER BY 1"
        ),
        "gpu1\ngpu2\n"
    );

    // The hostile comment is text: no script ran, no image was made.
    root.go(&format!("{}/web/r/{id}?tz=UTC", server.address()));
    assert_eq!(root.text("#r-comment"), HOSTILE);
    assert_eq!(
        root.run(
            "return document.querySelectorAll('img, script:not([src])').length;",
            json!([])
        ),
        json!(0)
    );
    let alert = get(&format!("{}/alert/text", root.base));
    assert_eq!(alert["value"]["error"], "no such alert", "{alert}");

    // The same booking on the synced host's CLI.
    within(Duration::from_secs(5), "the booking reaching gpu1", || {
        gpu1.owners() == ["root"]
    });
    let list = hosthog(&gpu1, &["list"]);
    assert!(list.contains(&id[..8]), "{list}");
    let fleet = hosthog(&gpu1, &["list", "--fleet"]);
    let line = fleet
        .lines()
        .find(|l| l.starts_with(&id[..8]))
        .unwrap_or_else(|| panic!("{fleet}"));
    assert!(
        line.starts_with(&format!("{}  gpu1,gpu2  exclusive  root ", &id[..8])),
        "{fleet}"
    );

    // Bob, signed in through another host, tries the same span: refused,
    // with who is in the way.
    let (status, answer) = server.request(
        "POST",
        "/agent/v1/web-link",
        Auth::Host(&gpu2_bundle),
        Some(&json!({"user": "bob"})),
    );
    assert_eq!(status, 201, "{answer}");
    let bob = driver.browser();
    bob.go(&format!(
        "{}{}",
        server.address(),
        answer["path"].as_str().unwrap()
    ));
    bob.click("#signin");
    bob.go(&format!("{}/web/book?tz=UTC&hosts=gpu2", server.address()));
    bob.set("#start", &format!("{tomorrow}T11:00"));
    bob.set("#end", &format!("{tomorrow}T13:00"));
    bob.click("#submit");
    let error = bob.text("#error");
    assert!(error.contains("Nothing was changed."), "{error}");
    let day = tomorrow.strftime("%a %-d %b %Y");
    assert_eq!(
        bob.text(".in-the-way li"),
        format!(
            "gpu2: root (exclusive) {day} 10:00 UTC – {day} 12:00 UTC, reservation {}",
            &id[..8]
        ),
        "{error}"
    );
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM reservation WHERE owner = 'bob'"
        ),
        "0\n"
    );
    bob.screenshot("conflict.png");
    // Shared, later that day, it fits.
    bob.set("#start", &format!("{tomorrow}T15:00"));
    bob.set("#end", &format!("{tomorrow}T17:00"));
    bob.set("#comment", "bob's sweep");
    bob.run(
        "document.querySelector('input[name=mode][value=shared]').checked = true;",
        json!([]),
    );
    bob.click("#submit");
    assert!(bob.body().contains("Booked "), "{}", bob.body());
    let bob_id = server
        .pg
        .psql(
            "fleet",
            "SELECT lpad(to_hex(id), 16, '0') FROM reservation WHERE owner = 'bob'",
        )
        .trim()
        .to_string();
    assert_eq!(bob_id.len(), 16, "{bob_id}");

    // Forms without the session's CSRF token, or from another origin, are
    // refused, and change nothing.
    let cookie = root.cookie("__Host-hh_session");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    let cookie = cookie["value"].as_str().unwrap().to_string();
    root.go(&format!("{}/web/book", server.address()));
    let csrf = root.run(
        "return document.querySelector('input[name=csrf]').value;",
        json!([]),
    );
    let csrf = csrf.as_str().unwrap();
    let form = format!("hosts=gpu1&start={tomorrow}T14:00&end={tomorrow}T15:00&mode=exclusive");
    let (status, body) = curl_post(&server, "/web/book", &cookie, &server.address(), &form);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("This form lacks this session&#39;s CSRF token"),
        "{body}"
    );
    let (status, body) = curl_post(
        &server,
        "/web/book",
        &cookie,
        "https://evil.example",
        &format!("{form}&csrf={csrf}"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("sent from another site"), "{body}");
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM reservation WHERE owner = 'root'"
        ),
        "1\n"
    );
    // The same form with both is accepted (the control).
    let (status, body) = curl_post(
        &server,
        "/web/book",
        &cookie,
        &server.address(),
        &format!("{form}&csrf={csrf}&tz=UTC"),
    );
    assert_eq!(status, 303, "{body}");

    // Extend by an hour from the page.
    root.go(&format!("{}/web/r/{id}?tz=UTC", server.address()));
    root.click("#extend");
    assert!(root.body().contains("Changed "), "{}", root.body());
    assert_eq!(
        server.pg.psql(
            "fleet",
            &format!("SELECT to_char(end_at AT TIME ZONE 'UTC', 'HH24:MI'), sequence FROM reservation WHERE lpad(to_hex(id), 16, '0') = '{id}'")
        ),
        "13:00|1\n"
    );

    // Views for the docs.
    root.go(&format!("{}/web/?tz=UTC&date={tomorrow}", server.address()));
    assert!(root.body().contains("■ root (mine)"), "{}", root.body());
    root.screenshot("day-view.png");
    root.go(&format!(
        "{}/web/?tz=UTC&view=week&date={tomorrow}",
        server.address()
    ));
    assert!(root.body().contains("Week of"), "{}", root.body());
    root.screenshot("week-view.png");
    // On a phone: the page fits the screen; the timeline scrolls inside it.
    let r = post(
        &format!("{}/window/rect", root.base),
        &json!({"width": 390, "height": 844}),
    );
    assert!(r["value"]["width"].is_number(), "{r}");
    root.go(&format!("{}/web/?tz=UTC&date={tomorrow}", server.address()));
    assert_eq!(
        root.run(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            json!([])
        ),
        json!(true)
    );
    root.screenshot("phone-day-view.png");
    post(
        &format!("{}/window/rect", root.base),
        &json!({"width": 1400, "height": 1000}),
    );
    // Who is where: gpu1 syncs and reports (its hosthogd runs with
    // --presence), gpu2 never did. The row's last cell is the report's age.
    within(Duration::from_secs(30), "gpu1's presence report", || {
        root.go(&format!("{}/web/who", server.address()));
        root.text("table.who")
            .lines()
            .any(|l| l.starts_with("gpu1 ") && l.ends_with(" ago"))
    });
    let who = root.text("table.who");
    assert!(who.contains("gpu2 free nobody never never"), "{who}");
    // gpu1 follows the calendar: its last sync and its last report are
    // seconds old (a host syncs at least every minute).
    let gpu1_row = who.lines().find(|l| l.starts_with("gpu1 ")).unwrap();
    let words: Vec<&str> = gpu1_row.split(' ').collect();
    let seconds = |w: &str| w.strip_suffix('s').and_then(|n| n.parse::<u32>().ok());
    let [.., synced, "ago", reported, "ago"] = words[..] else {
        panic!("{who}")
    };
    assert!(
        seconds(synced).is_some_and(|s| s < 70) && seconds(reported).is_some_and(|s| s < 70),
        "{who}"
    );
    assert_eq!(
        root.text("table.who thead"),
        "Host Held by On it now (how) Last sync Last presence report"
    );
    assert!(
        root.body()
            .contains("\"Last sync\" is when the host last showed it holds the current calendar"),
        "{}",
        root.body()
    );

    // Admins cancel anyone's reservation from its page; others see no
    // such button.
    bob.go(&format!("{}/web/r/{id}", server.address()));
    assert_eq!(
        bob.run(
            "return document.querySelectorAll('#cancel, #release, #extend').length;",
            json!([])
        ),
        json!(0)
    );
    server.run(&["admin", "add", "root"]);
    root.go(&format!("{}/web/r/{bob_id}?tz=UTC", server.address()));
    root.click("#cancel");
    assert!(root.body().contains("Cancelled "), "{}", root.body());
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT cancelled_at IS NOT NULL, (SELECT count(*) FROM claim c WHERE c.reservation = r.id) \
             FROM reservation r WHERE owner = 'bob'"
        ),
        "t|0\n"
    );
    root.go(&format!(
        "{}/web/usage?from={today}&to={tomorrow}",
        server.address()
    ));
    let usage = root.body();
    assert!(usage.contains("root"), "{usage}");
    assert!(
        usage.contains("4.0 h reserved") || usage.contains("h reserved"),
        "{usage}"
    );
    root.screenshot("usage.png");

    // Feeds: `hosthog feed` on the host, and a host's feed.
    let out = hosthog(&gpu1, &["feed"]);
    let feed = out.lines().next().unwrap().to_string();
    assert!(
        feed.ends_with("/me.ics") && feed.starts_with(&server.address()),
        "{out}"
    );
    let me = curl_get(&server, &feed);
    let parsed = parse_feed(&python, temp.path(), "me.ics", &me);
    let events = parsed["events"].as_array().unwrap();
    let multi = events
        .iter()
        .find(|e| e["uid"] == format!("{id}@hosthog"))
        .expect("the booking");
    assert_eq!(multi["location"], "gpu1, gpu2");
    assert_eq!(multi["sequence"], 1);
    assert_eq!(multi["status"], "CONFIRMED");
    assert_eq!(multi["utc"], true);
    assert!(
        multi["description"]
            .as_str()
            .unwrap()
            .contains(&format!("Comment: {HOSTILE}")),
        "{multi}"
    );
    let single = events
        .iter()
        .find(|e| e["location"] == "gpu1")
        .expect("the single-host booking");
    assert_eq!(single["sequence"], 0);
    let host_feed = feed.replace("/me.ics", "/host/gpu2.ics");
    let parsed = parse_feed(
        &python,
        temp.path(),
        "gpu2.ics",
        &curl_get(&server, &host_feed),
    );
    // A host's feed: the multi-host booking, and bob's, cancelled by an
    // admin, marked so.
    let summary: Vec<(String, String, i64)> = parsed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["uid"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (format!("{id}@hosthog"), "CONFIRMED".to_string(), 1),
            (format!("{bob_id}@hosthog"), "CANCELLED".to_string(), 1)
        ],
        "{parsed}"
    );

    // An override that reached the database some other way (a writer
    // that skipped the rules) is shown as U+FFFD, on the page and in feeds.
    server.pg.psql(
        "fleet",
        "INSERT INTO reservation (id, owner, exclusive, comment, start_at, end_at, created_at, \
         updated_at, hosts) VALUES (77, 'mallory', false, E'a\\u202Eb', now() + interval '1 day', \
         now() + interval '25 hours', now(), now(), '{gpu1}')",
    );
    root.go(&format!("{}/web/r/000000000000004d", server.address()));
    assert_eq!(root.text("#r-comment"), "a\u{FFFD}b");
    let gpu1_feed = curl_get(&server, &feed.replace("/me.ics", "/host/gpu1.ics"));
    assert!(!gpu1_feed.contains('\u{202E}'), "{gpu1_feed}");
    let parsed = parse_feed(&python, temp.path(), "gpu1.ics", &gpu1_feed);
    assert!(
        parsed["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["summary"] == "gpu1: mallory (shared) a\u{FFFD}b"),
        "{parsed}"
    );

    // Release from the page: not started yet, so it is cancelled, and the
    // feed says so.
    root.go(&format!("{}/web/r/{id}?tz=UTC", server.address()));
    root.click("#release");
    assert!(root.body().contains("Released "), "{}", root.body());
    within(Duration::from_secs(5), "the release reaching gpu1", || {
        gpu1.owners() == ["root"] // the single-host booking stays
    });
    let parsed = parse_feed(&python, temp.path(), "me-2.ics", &curl_get(&server, &feed));
    let cancelled = parsed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uid"] == format!("{id}@hosthog"))
        .expect("the cancelled booking stays in the feed")
        .clone();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert!(cancelled["sequence"].as_i64().unwrap() >= 2, "{cancelled}");

    // Signing out ends the session.
    root.go(&format!("{}/web/", server.address()));
    root.click(".signout button");
    root.go(&format!("{}/web/", server.address()));
    assert!(root.body().contains("Not signed in"), "{}", root.body());
}
