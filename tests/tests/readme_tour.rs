//! The README's five-minute tour, run verbatim after the real `make run`, and what `make run`
//! tells a newcomer.
//!
//! The tour is every fenced block of README.md that follows a line starting with
//! `<!-- tour`. In a block, a command is a line of shell (with the lines after it while it
//! ends in `\`); the `#` lines right under it are what it prints, each matched against a
//! line of its output with runs of spaces folded and `…` standing for any text. A command
//! that shows a `reject:` line (futucli check's refusal) must exit 1, every other one 0.
//!
//! `make run` starts with `CARGO=true` (the binaries are built already), `RUN` a fresh
//! directory and `BIN` this build's binaries. The tour runs in one bash, a command at a
//! time, in a directory laid out as the repository: `run/` is `make run`'s and
//! `target/debug` this build's. A `read` is given the last key plaintext printed (by
//! `make run` or by a command), as a reader pastes it. The tour binds fixed ports
//! (`make run`'s metrics on 9464, futu-gw-demo on 8080): as root, everything runs in a
//! network namespace of its own, with its own loopback; otherwise only when those ports
//! are free on this host, and the test says it is skipped when they are not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futu_authd_tests::{have_program, skip, target_dir};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The ports the tour binds on 127.0.0.1: `make run`'s metrics and futu-gw-demo's REST.
const TOUR_PORTS: [u16; 2] = [9464, 8080];

/// How long one command of the tour may take (curl waits for futu-gw-demo to listen).
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// How long `make run` may take to have its daemon answer.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Both tests use the same fixed ports when they run on this host's network: one at a time.
static FIXED_PORTS: Mutex<()> = Mutex::new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// One command of the tour and the lines the README shows under it.
#[derive(Debug)]
struct Step {
    code: String,
    shown: Vec<String>,
}

impl Step {
    /// futucli check exits 1 on a refusal; every other command of the tour exits 0.
    fn expected_status(&self) -> i32 {
        if self.shown.iter().any(|l| l.starts_with("reject:")) {
            1
        } else {
            0
        }
    }
}

/// The tour's blocks of README.md.
fn tour_blocks(readme: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("<!-- tour") {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "README.md: a tour marker must be followed by a fenced block, not {fence:?}"
        );
        blocks.push(lines.by_ref().take_while(|l| !l.starts_with("```")).collect());
    }
    blocks
}

/// The commands of a block and what each shows: a `#` line under a command (before a
/// blank line) is output; a `#` line that opens a paragraph is a remark.
fn steps(block: &[&str]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut open = false; // the paragraph has a command: `#` lines are its output
    let mut continued = false; // the last command line ended in `\`
    for line in block {
        if line.trim().is_empty() {
            open = false;
        } else if continued {
            let step = steps.last_mut().expect("a continued command");
            step.code.push('\n');
            step.code.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(comment) = line.strip_prefix('#') {
            if open {
                let shown = comment.strip_prefix(' ').unwrap_or(comment);
                steps.last_mut().expect("a command").shown.push(shown.to_owned());
            }
        } else {
            steps.push(Step {
                code: (*line).to_owned(),
                shown: Vec::new(),
            });
            open = true;
            continued = line.ends_with('\\');
        }
    }
    steps
}

/// Whether `line` is what the README shows as `shown`: runs of whitespace folded, `…`
/// standing for any text, the rest exact.
fn shows(shown: &str, line: &str) -> bool {
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (want, got) = (fold(shown), fold(line));
    let parts: Vec<&str> = want.split('…').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return want == got;
    }
    if got.len() < first.len() + last.len() || !got.starts_with(first) || !got.ends_with(last) {
        return false;
    }
    let mut rest = &got[first.len()..got.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The last key plaintext `text` shows after `plaintext: `.
fn last_plaintext(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let key = line.strip_prefix("plaintext: ")?.get(..35)?;
        (key.starts_with("fc_") && key[3..].bytes().all(|b| b.is_ascii_hexdigit())).then(|| key.to_owned())
    })
}

/// Where the processes of a test meet the network.
enum Network {
    /// A network namespace of its own, held open by this process (root only).
    Private(Child),
    /// This host's, whose tour ports were free a moment ago.
    Host,
}

impl Network {
    /// A private namespace when this test runs as root with unshare, nsenter and ip; this
    /// host's when the tour's ports are free; else why neither.
    fn get() -> Result<Network, String> {
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/bin/ip"]
            .into_iter()
            .find(|p| Path::new(p).is_file());
        let mut why_not_private = "not root".to_owned();
        if nix::unistd::geteuid().is_root() {
            match (ip, have_program("unshare"), have_program("nsenter")) {
                (Some(ip), true, true) => match Network::private(ip) {
                    Ok(net) => return Ok(net),
                    Err(e) => why_not_private = e,
                },
                _ => {
                    why_not_private =
                        "unshare, nsenter or ip is missing (Debian: util-linux, iproute2)".into()
                }
            }
        }
        for port in TOUR_PORTS {
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                return Err(format!(
                    "127.0.0.1:{port}, which the tour uses, is taken ({e}: a `make run` of yours?), and no \
                     network namespace of its own could be made ({why_not_private})"
                ));
            }
        }
        Ok(Network::Host)
    }

    /// `unshare --net` holding a namespace whose loopback is up.
    fn private(ip: &str) -> Result<Network, String> {
        let mut holder = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "\"$0\" link set lo up && echo up && exec sleep 3600",
                ip,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut first = String::new();
        let said = BufReader::new(holder.stdout.take().expect("piped"))
            .read_line(&mut first)
            .map_err(|e| e.to_string());
        if first.trim() == "up" {
            return Ok(Network::Private(holder));
        }
        let _ = holder.kill();
        let mut err = String::new();
        if let Some(mut e) = holder.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = holder.wait();
        Err(format!("unshare --net failed: {} {said:?}", err.trim()))
    }

    /// `program` started inside the network.
    fn command(&self, program: &str) -> Command {
        match self {
            Network::Private(holder) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/proc/{}/ns/net", holder.id()))
                    .arg("--")
                    .arg(program);
                c
            }
            Network::Host => Command::new(program),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Network::Private(holder) = self {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// A directory laid out as the repository for the tour: `run/` (make run's) and
/// `target/debug` (this build's binaries).
struct TourDir {
    dir: tempfile::TempDir,
}

impl TourDir {
    fn new() -> TourDir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::os::unix::fs::symlink(target_dir(), dir.path().join("target/debug")).unwrap();
        TourDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self) -> PathBuf {
        self.path().join("run")
    }

    /// Where futucli would go if a command forgot the exports: it must stay empty.
    fn not_exported(&self) -> PathBuf {
        self.path().join("not-exported")
    }
}

/// The environment a newcomer's shell has: nothing of futu's.
fn clean_env(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("FUTU_") || k.starts_with("MAKE") || k == "MFLAGS" {
            c.env_remove(k.as_ref());
        }
    }
    c
}

/// `make run`, in the foreground of its own process group, its output collected.
struct MakeRun {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl MakeRun {
    /// Starts `make run` on `tour`'s run directory and waits for its daemon to answer.
    fn start(net: &Network, tour: &TourDir) -> MakeRun {
        let mut cmd = net.command("make");
        clean_env(&mut cmd)
            .arg("run")
            .arg("CARGO=true")
            .arg(format!("RUN={}", tour.run().display()))
            .arg(format!("BIN={}", target_dir().display()))
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("start make run");
        let collect = |from: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let into = Arc::clone(&text);
            std::thread::spawn(move || {
                for line in BufReader::new(from).lines() {
                    let Ok(line) = line else { break };
                    let mut t = into.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().expect("piped")));
        let stderr = collect(Box::new(child.stderr.take().expect("piped")));
        let mut run = MakeRun {
            child,
            stdout,
            stderr,
        };
        let socket = tour.run().join("auth.sock");
        let until = Instant::now() + START_DEADLINE;
        while UnixStream::connect(&socket).is_err() {
            if let Ok(Some(status)) = run.child.try_wait() {
                panic!(
                    "make run ended ({status}) before its daemon answered:\n{}",
                    run.output()
                );
            }
            assert!(
                Instant::now() < until,
                "make run's daemon did not answer on {} within {START_DEADLINE:?}:\n{}",
                socket.display(),
                run.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        run
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }

    /// The commands it prints for a second terminal: its lines indented by four spaces.
    fn hints(&self) -> Vec<Step> {
        self.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .map(|code| Step {
                code: code.to_owned(),
                shown: Vec::new(),
            })
            .collect()
    }

    /// SIGTERM to its process group, as Ctrl-C in its terminal; waits for it to end.
    fn stop(mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let until = Instant::now() + START_DEADLINE;
        while let Ok(None) = self.child.try_wait() {
            assert!(
                Instant::now() < until,
                "make run did not stop on SIGTERM:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// What one command did.
#[derive(Debug)]
struct Ran {
    status: i32,
    output: String,
}

/// One bash, as the second terminal: commands run in it one at a time, so that exports and
/// variables carry over, each with its own output files.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    logs: tempfile::TempDir,
    count: usize,
}

impl Shell {
    fn start(net: &Network, tour: &TourDir) -> Shell {
        let mut cmd = net.command("bash");
        clean_env(&mut cmd)
            // A command that forgot the exports would reach none of the host's keys.
            .env("FUTU_AUTH_SOCKET", tour.not_exported().join("auth.sock"))
            .env("FUTU_KEYS_FILE", tour.not_exported().join("keys.json"))
            .args(["--noprofile", "--norc", "-s"])
            .current_dir(tour.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().expect("start bash");
        let stdin = child.stdin.take().expect("piped");
        Shell {
            child,
            stdin,
            logs: tempfile::tempdir().unwrap(),
            count: 0,
        }
    }

    /// Runs `code` with `input` on its stdin; waits for it to end.
    fn run(&mut self, code: &str, input: &str) -> Ran {
        self.count += 1;
        let log = |ext: &str| self.logs.path().join(format!("{}.{ext}", self.count));
        std::fs::write(log("in"), input).unwrap();
        let script = format!(
            "{{\n{code}\n}} >'{out}' 2>&1 <'{inp}'\necho $? >'{rc}'\n: >'{done}'\n",
            out = log("out").display(),
            inp = log("in").display(),
            rc = log("rc").display(),
            done = log("done").display(),
        );
        self.stdin
            .write_all(script.as_bytes())
            .expect("bash reads its commands");
        self.stdin.flush().unwrap();
        let until = Instant::now() + STEP_DEADLINE;
        while !log("done").exists() {
            let printed = || std::fs::read_to_string(log("out")).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("bash ended ({status}) in\n{code}\nhaving printed\n{}", printed());
            }
            if Instant::now() > until {
                panic!(
                    "this command did not end within {STEP_DEADLINE:?}:\n{code}\nhaving printed\n{}",
                    printed()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ran {
            status: std::fs::read_to_string(log("rc"))
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
            output: std::fs::read_to_string(log("out")).unwrap(),
        }
    }

    /// Runs each step as a reader would, checking its exit status and the lines shown
    /// under it; `key` is the last plaintext the reader has seen, for a `read`.
    fn walk(&mut self, steps: &[Step], key: &mut Option<String>) -> Vec<Ran> {
        let mut ran = Vec::new();
        for step in steps {
            let input = if step.code.starts_with("read ") {
                let key = key
                    .as_deref()
                    .unwrap_or_else(|| panic!("no key plaintext was printed before `{}`", step.code));
                format!("{key}\n")
            } else {
                String::new()
            };
            let r = self.run(&step.code, &input);
            assert_eq!(
                r.status,
                step.expected_status(),
                "exit status of\n{}\nwhich printed\n{}",
                step.code,
                r.output
            );
            for shown in &step.shown {
                assert!(
                    r.output.lines().any(|line| shows(shown, line)),
                    "the README shows\n  {shown}\nunder\n{}\nbut it printed\n{}",
                    step.code,
                    r.output
                );
            }
            if let Some(k) = last_plaintext(&r.output) {
                *key = Some(k);
            }
            ran.push(r);
        }
        ran
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The shell and whatever a command left running in the background (futu-gw-demo).
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// What every test here needs, or why it cannot run.
fn prerequisites(tools: &[&str]) -> Option<String> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_program(t)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (Debian packages; `make deps` installs them)",
            missing.join(", ")
        )
    })
}

#[test]
fn the_readme_tour_works_verbatim_after_make_run() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks = tour_blocks(&readme);
    assert!(!blocks.is_empty(), "README.md has no block marked <!-- tour");
    let steps: Vec<Step> = blocks.iter().flat_map(|b| steps(b)).collect();

    // What the tour must not teach: a key on a command line or in a URL, installed paths,
    // a futucli that is not on PATH.
    for step in &steps {
        let code: String = step
            .code
            .lines()
            .map(|l| l.split(" #").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for bad in [
            "--token",
            "token=",
            "fc_",
            "/etc/futu",
            "/var/log/futu-authd",
            "/run/futu",
        ] {
            assert!(!code.contains(bad), "the tour's command has {bad:?}:\n{code}");
        }
        assert!(
            !code
                .split_whitespace()
                .any(|w| w == "futucli" || w == "futu-gw-demo"),
            "the tour calls a binary by a bare name (use target/debug/…):\n{code}"
        );
    }

    if let Some(why) = prerequisites(&["make", "bash", "jq", "curl"]) {
        return skip(&why);
    }
    let _one_at_a_time = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let net = match Network::get() {
        Ok(net) => net,
        Err(why) => return skip(&why),
    };
    let tour = TourDir::new();
    let make_run = MakeRun::start(&net, &tour);
    let mut key = last_plaintext(&make_run.stdout());
    assert!(
        key.is_some(),
        "make run printed no plaintext:\n{}",
        make_run.output()
    );

    let mut shell = Shell::start(&net, &tour);
    let ran = shell.walk(&steps, &mut key);
    drop(shell);

    // What a tour shows, whatever its wording: a quote allowed, a `rate` refusal, the audit
    // trail through jq, a metric.
    let said = |pick: &dyn Fn(&Step, &Ran) -> bool| steps.iter().zip(&ran).any(|(s, r)| pick(s, r));
    assert!(
        said(&|s, r| s.code.contains("Qot_GetBasicQot")
            && r.output.contains("allow: key demo, scope qot:read")),
        "the tour shows no quote allowed with the demo key"
    );
    assert!(
        said(&|_, r| r.output.lines().any(|l| l.starts_with("reject: rate "))),
        "the tour shows no `rate` refusal"
    );
    assert!(
        said(&|s, r| s.code.starts_with("jq ") && !s.shown.is_empty() && !r.output.trim().is_empty()),
        "the tour shows no audit record through jq"
    );
    assert!(
        said(&|s, r| s.code.contains("127.0.0.1:9464/metrics") && r.output.contains("futu_auth_")),
        "the tour scrapes no metric"
    );
    assert!(
        !tour.not_exported().exists(),
        "a tour command went past the exports to futucli's default socket or keys file"
    );
    make_run.stop();
}

#[test]
fn make_run_says_how_to_reach_its_daemon_and_a_second_run_how_to_get_a_new_demo_key() {
    if let Some(why) = prerequisites(&["make", "bash"]) {
        return skip(&why);
    }
    let _one_at_a_time = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let net = match Network::get() {
        Ok(net) => net,
        Err(why) => return skip(&why),
    };
    let tour = TourDir::new();
    let exports = format!(
        "export FUTU_AUTH_SOCKET={run}/auth.sock FUTU_KEYS_FILE={run}/keys.json",
        run = tour.run().display()
    );

    // The first run prints the key once, then what to paste: the exports, the key into
    // FUTU_AUTH_TOKEN, a check. Pasted, they work.
    let first = MakeRun::start(&net, &tour);
    let said = first.stdout();
    let mut key = last_plaintext(&said);
    let old_key = key
        .clone()
        .unwrap_or_else(|| panic!("the first make run printed no plaintext:\n{said}"));
    assert!(said.contains(&exports), "{said}");
    assert!(said.contains("read -rs FUTU_AUTH_TOKEN"), "{said}");
    assert!(said.contains("keys this daemon never sees"), "{said}");
    let hints = first.hints();
    assert!(hints.last().is_some_and(|h| h.code.contains("check")), "{said}");
    let mut shell = Shell::start(&net, &tour);
    shell.walk(&hints, &mut key);
    drop(shell);
    first.stop();

    // The second cannot show it again, says so, and how to get a new plaintext; pasted,
    // those lines work too, and the old plaintext is still accepted for the overlap.
    let second = MakeRun::start(&net, &tour);
    let said = second.stdout();
    assert_eq!(
        last_plaintext(&said),
        None,
        "a second make run printed a plaintext:\n{said}"
    );
    assert!(said.contains("cannot be shown again"), "{said}");
    assert!(said.contains(&exports), "{said}");
    let hints = second.hints();
    assert!(
        hints.iter().any(|h| h.code.ends_with("futucli rotate-key demo")),
        "{said}"
    );
    let mut shell = Shell::start(&net, &tour);
    let mut key = None;
    shell.walk(&hints, &mut key);
    assert_ne!(
        key.as_deref(),
        Some(old_key.as_str()),
        "rotate-key printed the old plaintext"
    );
    let still = shell.walk(
        &[
            Step {
                code: "read -rs OLD".into(),
                shown: Vec::new(),
            },
            Step {
                code: "FUTU_AUTH_TOKEN=$OLD target/debug/futucli check --endpoint Qot_GetBasicQot".into(),
                shown: vec!["allow: key demo, scope qot:read".into()],
            },
        ],
        &mut Some(old_key),
    );
    assert_eq!(still.len(), 2);
    drop(shell);
    assert!(!tour.not_exported().exists());
    second.stop();
}

#[test]
fn tour_steps_are_the_lines_of_shell_and_the_output_shown_under_each() {
    let block = [
        "export A=1",
        "cmd --flag \\",
        "  --more",
        "# shown one",
        "#   shown two",
        "",
        "# a remark, not output",
        "other",
    ];
    let s = steps(&block);
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(s[0].code, "export A=1");
    assert!(s[0].shown.is_empty());
    assert_eq!(s[1].code, "cmd --flag \\\n  --more");
    assert_eq!(s[1].shown, ["shown one", "  shown two"]);
    assert_eq!(s[2].code, "other");
    assert!(s[2].shown.is_empty());

    assert!(shows(
        "allow: key demo, scope qot:read",
        "allow: key demo,  scope qot:read"
    ));
    assert!(shows("ticket …", "ticket 123"));
    assert!(shows("a … c … e", "a b c d e"));
    assert!(!shows("a … c", "a b"));
    assert!(!shows("allow", "allow: key demo"));
    assert!(shows("x …", "x …"));
    assert_eq!(
        last_plaintext("plaintext: fc_0123456789abcdef0123456789abcdef ← save this"),
        Some("fc_0123456789abcdef0123456789abcdef".into())
    );
    assert_eq!(last_plaintext("plaintext: fc_… ← save this"), None);
}
