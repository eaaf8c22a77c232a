//! containerd and dockerd for the client suites, each started in a temporary directory of its
//! own (root, state, sockets, configuration), so that nothing is shared with a daemon of the
//! machine or of another test. Stopped when dropped: SIGTERM, then SIGKILL to the whole
//! process group after a grace period (dockerd's children included).
//!
//! Both daemons need root. Started without it, they exit at once; the test then fails with
//! the daemon's log, saying so, never passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::{Tool, require};

/// How long a daemon may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A daemon process, leader of its own process group, logging to a file.
#[derive(Debug)]
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, program: &Path, args: &[String], log: PathBuf) -> Daemon {
        use std::os::unix::process::CommandExt as _;
        let file = std::fs::File::create(&log).expect("create daemon log");
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", program.display()));
        Daemon { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `probe` succeeds; panics (with the log) if the daemon exits first or
    /// does not answer in time.
    async fn wait_ready(&mut self, probe: &Tool, args: &[&str]) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited during start-up ({status}); it must run as root (this test \
                     runs as uid {}):\n{}",
                    self.name,
                    uid(),
                    self.log()
                );
            }
            if probe.run(args).await.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        signal("TERM", &pid);
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group: whatever the daemon started and left behind.
        signal("KILL", &format!("-{pid}"));
        let _ = self.child.wait();
    }
}

fn signal(name: &str, target: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .stderr(Stdio::null())
        .status();
}

/// The effective user id, for the message when a daemon refuses to start.
fn uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A containerd with its own root, state and socket.
#[derive(Debug)]
pub struct Containerd {
    daemon: Daemon,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub async fn start() -> Containerd {
        let program = require("containerd", "apt-get install containerd");
        let ctr = require("ctr", "apt-get install containerd");
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let config = format!(
            "version = 2\n\
             root = \"{root}/root\"\n\
             state = \"{root}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{socket}\"\n\
             [ttrpc]\n  address = \"{socket}.ttrpc\"\n\
             [debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n",
            root = root.display(),
            socket = socket.display(),
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).expect("write containerd config");
        let args = vec!["--config".to_owned(), config_path.display().to_string()];
        let mut daemon = Daemon::spawn("containerd", &program, &args, root.join("log"));
        let probe = Tool::new(ctr).arg("--address").arg(&socket);
        daemon.wait_ready(&probe, &["version"]).await;
        Containerd {
            daemon,
            socket,
            dir,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ctr` on this containerd, in `namespace`.
    pub fn ctr(&self, namespace: &str) -> Tool {
        Tool::new(require("ctr", "apt-get install containerd"))
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace)
    }

    /// A path in this daemon's directory, for archives.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// A dockerd (vfs storage, no networking of its own) on a containerd of its own.
#[derive(Debug)]
pub struct Dockerd {
    // Fields drop in order: dockerd stops before its containerd and its directory go.
    daemon: Daemon,
    containerd: Containerd,
    cli: PathBuf,
    dir: tempfile::TempDir,
}

/// What a [`Dockerd`] is configured with beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct DockerdOptions {
    /// `registry-mirrors`: URLs (`http://127.0.0.1:<port>`) docker asks before Docker Hub.
    pub mirrors: Vec<String>,
    /// `insecure-registries`: `host:port`s spoken to over plain HTTP.
    pub insecure: Vec<String>,
}

impl Dockerd {
    pub async fn start() -> Dockerd {
        Dockerd::start_with(DockerdOptions::default()).await
    }

    /// A dockerd whose Docker Hub pulls go to `mirrors` first (each also an insecure
    /// registry, as loopback registries speak plain HTTP).
    pub async fn start_with_mirrors(mirrors: &[&str]) -> Dockerd {
        let insecure = mirrors
            .iter()
            .map(|url| {
                let host = url.split_once("://").map_or(*url, |(_, rest)| rest);
                host.trim_end_matches('/').to_owned()
            })
            .collect();
        Dockerd::start_with(DockerdOptions {
            mirrors: mirrors.iter().map(|m| (*m).to_owned()).collect(),
            insecure,
        })
        .await
    }

    pub async fn start_with(options: DockerdOptions) -> Dockerd {
        let program = require("dockerd", "apt-get install docker.io");
        // The CLI of the same package as the daemon (Debian puts dockerd in /usr/sbin and
        // docker in /usr/bin), not another one earlier on PATH.
        let sbin = program.parent().expect("dockerd's directory");
        let cli = [sbin.join("docker"), sbin.join("../bin/docker")]
            .into_iter()
            .find(|cli| cli.is_file())
            .unwrap_or_else(|| require("docker", "apt-get install docker.io"));
        let containerd = Containerd::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["config", "home", "tmp"] {
            std::fs::create_dir(root.join(sub)).expect("create docker dir");
        }
        // A configuration of its own: the machine's /etc/docker/daemon.json is not read.
        let mut config = serde_json::Map::new();
        if !options.mirrors.is_empty() {
            config.insert("registry-mirrors".into(), options.mirrors.into());
        }
        if !options.insecure.is_empty() {
            config.insert("insecure-registries".into(), options.insecure.into());
        }
        let config = serde_json::Value::Object(config).to_string();
        std::fs::write(root.join("daemon.json"), config).expect("write daemon.json");
        std::fs::write(root.join("config/config.json"), "{}").expect("write config.json");
        let at = |name: &str| root.join(name).display().to_string();
        let args: Vec<String> = vec![
            format!("--config-file={}", at("daemon.json")),
            format!("--data-root={}", at("data")),
            format!("--exec-root={}", at("exec")),
            format!("--pidfile={}", at("docker.pid")),
            format!("--host=unix://{}", at("docker.sock")),
            format!("--containerd={}", containerd.socket().display()),
            "--storage-driver=vfs".to_owned(),
            "--iptables=false".to_owned(),
            "--bridge=none".to_owned(),
        ];
        let mut daemon = Daemon::spawn("dockerd", &program, &args, root.join("log"));
        daemon
            .wait_ready(&docker_cli(&cli, root), &["version"])
            .await;
        Dockerd {
            daemon,
            containerd,
            cli,
            dir,
        }
    }

    /// The docker CLI on this daemon, with a configuration directory (logins) of its own and
    /// the classic builder (docker 20.10's default, which `FROM scratch` builds need nothing
    /// more than).
    pub fn docker(&self) -> Tool {
        docker_cli(&self.cli, self.dir.path())
    }

    /// A path in this daemon's directory, for build contexts.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CLI's stored logins (`config.json`).
    pub fn cli_config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("config/config.json")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        format!(
            "dockerd:\n{}\ncontainerd:\n{}",
            self.daemon.log(),
            self.containerd.log()
        )
    }
}

fn docker_cli(cli: &Path, root: &Path) -> Tool {
    Tool::new(cli)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", root.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", root.join("config"))
        .env("DOCKER_BUILDKIT", "0")
        .env("HOME", root.join("home"))
        .env("TMPDIR", root.join("tmp"))
}
