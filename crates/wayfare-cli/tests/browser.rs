//! The web dashboard in a real browser (`cargo test browser_`): Debian's chromium, headless,
//! driven through chromedriver (both installed by `make setup`), against real daemons of the
//! end-to-end lab (loopback mode: a shadowsocks session, real chain, real traffic). Screenshots
//! of each view go to `CARGO_TARGET_TMPDIR/browser/`.

mod lab;

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use lab::{MIB, World, spec};
use wayfare_node::{config::ServiceName, labnet::Daemon};
use wayfare_tunnel::lab::{Netns, NsRuntime};

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver (and so chromium) on this host, or in a lab host's namespace.
fn driver(ns: Option<&Netns>) -> Driver {
    let port = free_port();
    let mut cmd = match ns {
        Some(ns) => ns.command("chromedriver"),
        None => Command::new("chromedriver"),
    };
    let child = cmd
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; `make setup` installs it)");
    let t0 = Instant::now();
    let up = || match ns {
        // Its port is on the namespace's loopback: look with `ss` there.
        Some(ns) => ns
            .command("ss")
            .args(["-Htln", &format!("sport = :{port}")])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty()),
        None => TcpStream::connect(("127.0.0.1", port)).is_ok(),
    };
    while !up() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(port: u16, profile: PathBuf) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session through chromedriver")
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("· screenshot {}", path.display());
}

async fn text(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

async fn visible(c: &Client, id: &str) -> bool {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Polls `f` every 200 ms until it returns `Some`, for up to `max`.
async fn until<T, F, Fut>(what: &str, max: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < max, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn base(d: &Daemon) -> String {
    format!("http://{}", d.api)
}

fn bytes_of(s: &str) -> u64 {
    s.trim_end_matches(" B")
        .replace(',', "")
        .parse()
        .unwrap_or(0)
}

/// The dashboard as a user drives it: a one-time link logs the buyer in, the live session's row
/// shows and its bytes grow while traffic flows, every view renders (screenshots), the seller's
/// dashboard (logged in with its token) shows the session and its earnings, and the Disconnect
/// button ends the session in the daemon.
#[test]
fn browser_dashboard_shows_the_live_session_and_disconnects_it() {
    if !lab::lab_available("browser_dashboard_shows_the_live_session_and_disconnects_it") {
        return;
    }
    let w = World::new(true, spec(vec![ServiceName::Shadowsocks]));
    let c = w.connect("shadowsocks");
    let socks: u16 = c["socks"]
        .as_str()
        .and_then(|s| s.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no SOCKS5 port in {c}"));
    let link = w
        .net
        .cli_json(&w.buyer, &["dashboard"])
        .expect("wayfare dashboard");
    let url = link["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&base(&w.buyer)) && url.contains("#code="),
        "{url}"
    );
    let seller_token = std::fs::read_to_string(w.sellers[0].data_dir.join("api-token")).unwrap();
    let l = w.net.lab().expect("namespace lab");

    // The browser runs on the buyer's host, where its daemon's API listens.
    let (d, rt) = in_host(&l.buyer);
    let b = rt.block_on(browser(d.port, d._profile.path().to_path_buf()));
    let page = b.clone();
    rt.block_on(async move {
        page.goto(&url).await.unwrap();
        until("the logged-in page", Duration::from_secs(15), || async {
            visible(&page, "app").await.then_some(())
        })
        .await;
        let now = page.current_url().await.unwrap();
        assert!(
            !now.as_str().contains("code="),
            "the code leaves the URL: {now}"
        );
        until("the session row", Duration::from_secs(15), || async {
            visible(&page, "session").await.then_some(())
        })
        .await;
    });
    // Bytes grow while the session carries traffic.
    w.net
        .download(Some(socks), MIB)
        .expect("a download through the session");
    let first = rt.block_on(page_bytes(b.clone(), 0));
    w.net
        .download(Some(socks), 2 * MIB)
        .expect("another download");
    let later = rt.block_on(page_bytes(b.clone(), first));
    assert!(later >= first + 2 * MIB, "{first} -> {later}");
    let page = b.clone();
    rt.block_on(async move {
        assert!(text(&page, "s-paid").await.ends_with("ETH"));
        screenshot(&page, "buyer-session").await;
        for view in ["channels", "node", "sell"] {
            page.find(Locator::Css(&format!(".tab[data-view='{view}']")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            until(view, Duration::from_secs(5), || async {
                visible(&page, &format!("view-{view}")).await.then_some(())
            })
            .await;
            tokio::time::sleep(Duration::from_millis(1200)).await; // one refresh
            screenshot(&page, &format!("buyer-{view}")).await;
            if view == "node" {
                let chain = text(&page, "chain").await;
                assert!(
                    chain.contains("block"),
                    "node health shows the chain: {chain:?}"
                );
                let peers: u64 = text(&page, "p2p-peers").await.parse().unwrap_or(0);
                assert!(peers >= 1, "the buyer is connected to the relay at least");
            }
        }
        let channels = page
            .find_all(Locator::Css("#channels tr.channel"))
            .await
            .unwrap();
        assert!(!channels.is_empty(), "the channel is listed");
    });

    // The seller's dashboard, on its host, logged in with its token through the form.
    {
        let (sd, srt) = in_host(&l.seller);
        let sb = srt.block_on(browser(sd.port, sd._profile.path().to_path_buf()));
        let seller_url = base(&w.sellers[0]);
        srt.block_on(async move {
            sb.goto(&seller_url).await.unwrap();
            sb.find(Locator::Id("token"))
                .await
                .unwrap()
                .send_keys(seller_token.trim())
                .await
                .unwrap();
            sb.find(Locator::Id("login-btn"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            until("the seller's page", Duration::from_secs(10), || async {
                visible(&sb, "app").await.then_some(())
            })
            .await;
            sb.find(Locator::Css(".tab[data-view='sell']"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            until(
                "the seller's session row",
                Duration::from_secs(15),
                || async {
                    let rows = sb
                        .find_all(Locator::Css("#seller-sessions tr.seller-session"))
                        .await
                        .ok()?;
                    (!rows.is_empty()).then_some(())
                },
            )
            .await;
            assert!(text(&sb, "unsettled").await.ends_with("ETH"));
            // How buyers reach it, as `wayfare seller status` says it.
            let reach = text(&sb, "reachability").await;
            assert!(reach.starts_with("direct on "), "{reach}");
            screenshot(&sb, "seller-sell").await;
            sb.close().await.unwrap();
        });
    }

    // Back to the buyer: Disconnect from the button.
    let page = b.clone();
    rt.block_on(async move {
        page.find(Locator::Css(".tab[data-view='buy']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        page.find(Locator::Id("disconnect"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(
            "the session to leave the page",
            Duration::from_secs(20),
            || async { visible(&page, "no-session").await.then_some(()) },
        )
        .await;
        screenshot(&page, "buyer-disconnected").await;
        page.close().await.unwrap();
    });
    let status = w.net.cli_json(&w.buyer, &["status"]).unwrap();
    let live = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "buyer" && s["live"] == true)
        .count();
    assert_eq!(live, 0, "the daemon's session was left: {status}");
}

/// A chromedriver and a runtime whose sockets live in `ns`.
fn in_host(ns: &Netns) -> (Driver, NsRuntime) {
    let d = driver(Some(ns));
    let rt = ns.runtime(2).expect("a runtime in the lab host");
    (d, rt)
}

/// The session's bytes as the page shows them, once above `above`.
async fn page_bytes(page: Client, above: u64) -> u64 {
    until(
        "the page's bytes to grow",
        Duration::from_secs(15),
        || async {
            let n = bytes_of(&text(&page, "s-bytes").await);
            (n > above).then_some(n)
        },
    )
    .await
}

/// A wrong token is refused with the fix named; a dashboard link works once.
#[test]
fn browser_a_wrong_token_is_refused_and_a_link_works_once() {
    let w = World::new(false, spec(vec![ServiceName::Shadowsocks]));
    let link = w
        .net
        .cli_json(&w.buyer, &["dashboard"])
        .expect("wayfare dashboard");
    let url = link["url"].as_str().unwrap().to_string();
    let d = driver(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = browser(d.port, d._profile.path().to_path_buf()).await;
        b.goto(&base(&w.buyer)).await.unwrap();
        assert!(visible(&b, "login").await && !visible(&b, "app").await);
        screenshot(&b, "login").await;
        b.find(Locator::Id("token"))
            .await
            .unwrap()
            .send_keys("not-the-token")
            .await
            .unwrap();
        b.find(Locator::Id("login-btn"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let msg = until("the refusal", Duration::from_secs(10), || async {
            let t = text(&b, "login-error").await;
            (!t.is_empty()).then_some(t)
        })
        .await;
        assert!(
            msg.contains("Wrong token") && msg.contains("api-token"),
            "{msg}"
        );
        assert!(
            !visible(&b, "app").await,
            "nothing shown with a wrong token"
        );
        screenshot(&b, "login-refused").await;

        b.goto(&url).await.unwrap();
        until("the link logs in", Duration::from_secs(10), || async {
            visible(&b, "app").await.then_some(())
        })
        .await;
        // The same link again, in a fresh tab state: refused.
        b.execute("sessionStorage.clear()", vec![]).await.unwrap();
        b.goto("about:blank").await.unwrap();
        b.goto(&url).await.unwrap();
        let msg = until(
            "the second use refused",
            Duration::from_secs(10),
            || async {
                let t = text(&b, "login-error").await;
                (!t.is_empty()).then_some(t)
            },
        )
        .await;
        assert!(msg.contains("used or has expired"), "{msg}");
        b.close().await.unwrap();
    });
    // The API itself refuses the wrong token too (the page is only a client of it).
    let wrong = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Authorization: Bearer nope",
        ])
        .arg(format!("{}/v1/status", base(&w.buyer)))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&wrong.stdout), "401");
}
