//! skopeo for the authentication suites: its own policy, auth file, home and temporary
//! directory, so that neither the user's configuration nor stored logins are used; credentials
//! only ever come from `--creds`, `--src-creds` and `--dest-creds`.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::PathBuf;
use std::process::Output;

/// A skopeo with a private configuration.
#[derive(Debug)]
pub struct Skopeo {
    dir: tempfile::TempDir,
}

impl Skopeo {
    /// Panics when skopeo is missing (the test command installs it).
    pub fn new() -> Skopeo {
        let version = std::process::Command::new("skopeo")
            .arg("--version")
            .output();
        assert!(
            version.as_ref().is_ok_and(|out| out.status.success()),
            "skopeo is not usable ({version:?}); ./scripts/test.sh installs it"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["tmp", "home", "run"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create skopeo dir");
        }
        let policy = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;
        std::fs::write(dir.path().join("policy.json"), policy).expect("write policy.json");
        std::fs::write(dir.path().join("auth.json"), r#"{"auths":{}}"#).expect("write auth.json");
        Skopeo { dir }
    }

    /// A path in this skopeo's directory (for OCI layouts).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let dir = self.dir.path();
        tokio::process::Command::new("skopeo")
            .arg("--policy")
            .arg(dir.join("policy.json"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            // A safety net against a stalled transfer, not a performance check.
            .args(["--command-timeout", "300s"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .env("HOME", dir.join("home"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("TMPDIR", dir.join("tmp"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("run skopeo")
    }

    /// Runs skopeo, asserts success, returns its standard output.
    pub async fn ok<S: AsRef<OsStr> + Debug>(&self, args: &[S]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs skopeo, asserts failure, returns its standard error.
    pub async fn fails<S: AsRef<OsStr> + Debug>(&self, args: &[S]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "skopeo {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Default for Skopeo {
    fn default() -> Self {
        Skopeo::new()
    }
}

/// What a user does with skopeo against a registry that wants credentials: push with
/// `--dest-creds`, inspect and list with `--creds`, copy between repositories with both;
/// without credentials, with a wrong password, or into another tenant's project, it fails.
pub async fn logs_in_and_copies(reg: &crate::Registry) {
    use super::{ALICE, BOB};
    use crate::oci_layout::{Image, OciLayout};

    let skopeo = Skopeo::new();
    let image = Image::generate("amd64", 42, &[64 << 10, 16 << 10]);
    let mut layout = OciLayout::create(&skopeo.path("src")).expect("layout");
    layout.add_image("tool", &image).expect("write image");
    let src = layout.reference("tool");
    let creds = |(user, password): (&str, &str)| format!("{user}:{password}");
    let (alice, bob) = (creds(ALICE), creds(BOB));
    let wrong = format!("{}:not-the-password", ALICE.0);
    let at = |repo: &str| format!("docker://{}/{repo}", reg.host());
    let copy = |src: String, dest: String, src_creds: Option<&str>, dest_creds: &str| {
        let mut args = vec![
            "copy".to_owned(),
            "--preserve-digests".to_owned(),
            "--src-tls-verify=false".to_owned(),
            "--dest-tls-verify=false".to_owned(),
            format!("--dest-creds={dest_creds}"),
        ];
        if let Some(src_creds) = src_creds {
            args.push(format!("--src-creds={src_creds}"));
        }
        args.extend([src, dest]);
        args
    };
    skopeo
        .ok(&copy(src.clone(), at("alpha/tool:1"), None, &alice))
        .await;
    let inspect = |who: &str, repo: &str| {
        vec![
            "inspect".to_owned(),
            "--raw".to_owned(),
            "--tls-verify=false".to_owned(),
            format!("--creds={who}"),
            at(repo),
        ]
    };
    let raw = skopeo.ok(&inspect(&alice, "alpha/tool:1")).await;
    assert_eq!(
        raw.as_bytes(),
        image.manifest.bytes,
        "pulled manifest differs"
    );
    skopeo
        .ok(&copy(
            at("alpha/tool:1"),
            at("alpha/tool-copy:1"),
            Some(&alice),
            &alice,
        ))
        .await;
    let tags = skopeo
        .ok(&[
            "list-tags".to_owned(),
            "--tls-verify=false".to_owned(),
            format!("--creds={alice}"),
            at("alpha/tool"),
        ])
        .await;
    assert!(tags.contains("\"1\""), "{tags}");

    // Refused: another tenant, a wrong password, no credentials at all.
    let denied = skopeo.fails(&inspect(&bob, "alpha/tool:1")).await;
    assert!(
        denied.contains("denied") || denied.contains("unauthorized"),
        "{denied}"
    );
    let wrong_password = skopeo.fails(&inspect(&wrong, "alpha/tool:1")).await;
    assert!(
        wrong_password.to_lowercase().contains("unauthorized")
            || wrong_password.contains("authentication required"),
        "{wrong_password}"
    );
    let anonymous = skopeo
        .fails(&["inspect", "--tls-verify=false", &at("alpha/tool:1")])
        .await;
    assert!(!anonymous.is_empty());
    skopeo
        .fails(&copy(src, at("beta/tool:1"), None, &alice))
        .await;
    assert!(!reg.log().contains(ALICE.1), "a password reached the log");
}
