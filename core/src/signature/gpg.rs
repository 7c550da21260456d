//! Signing through the user's `gpg`, as containers/image's gpgme mechanism does
//! through the agent: the key may live in `$GNUPGHOME`, behind gpg-agent or on a
//! smartcard, and kpod never sees it. The result is a binary (non-armored)
//! OpenPGP signed message over the simple-signing payload.

use super::manifest_digest;
use super::payload::Payload;
use crate::copy::Signer;
use crate::{Error, Result};
use kpod_plugin_sdk::reference::Reference;
use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Signs images as `docker_reference` with a gpg key (`--sign-by KEY`).
#[derive(Debug, Clone)]
pub struct GpgSigner {
    key: String,
    docker_reference: String,
    passphrase: Option<String>,
    program: OsString,
    home: Option<PathBuf>,
}

impl GpgSigner {
    /// A signer with gpg key `key` (a fingerprint, key ID or user ID, as gpg's
    /// `--local-user` takes it) that vouches for `docker_reference`, the
    /// destination's reference (written fully qualified, e.g.
    /// `docker.io/library/app:1`, as containers/image writes it).
    pub fn new(key: &str, docker_reference: &Reference) -> Result<GpgSigner> {
        if key.is_empty() || key.starts_with('-') || key.contains('\n') {
            return Err(Error::InvalidInput(format!(
                "--sign-by {key:?}: not a gpg key identity"
            )));
        }
        Ok(GpgSigner {
            key: key.to_string(),
            docker_reference: docker_reference.to_string(),
            passphrase: None,
            program: "gpg".into(),
            home: None,
        })
    }

    /// Uses the first line of `path` as the key's passphrase
    /// (`--sign-passphrase-file`), given to gpg in loopback pinentry mode.
    pub fn with_passphrase_file(mut self, path: &Path) -> Result<GpgSigner> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("reading passphrase file {}", path.display()), e))?;
        let mut line = String::new();
        std::io::BufReader::new(file)
            .read_line(&mut line)
            .map_err(|e| Error::io(format!("reading passphrase file {}", path.display()), e))?;
        let line = line.strip_suffix('\n').unwrap_or(&line).to_string();
        // As containers/image: an empty passphrase means "none", and a passphrase
        // cannot hold a line break (gpg reads one line).
        self.passphrase = (!line.is_empty()).then_some(line);
        Ok(self)
    }

    /// Runs `program` instead of `gpg` from `PATH`.
    pub fn with_program(mut self, program: impl Into<OsString>) -> GpgSigner {
        self.program = program.into();
        self
    }

    /// Uses `dir` as `GNUPGHOME` instead of the environment's (tests).
    pub fn with_home(mut self, dir: impl Into<PathBuf>) -> GpgSigner {
        self.home = Some(dir.into());
        self
    }

    /// The reference the signatures vouch for.
    pub fn docker_reference(&self) -> &str {
        &self.docker_reference
    }

    /// Signs `manifest` (raw bytes as stored at the destination): a new
    /// payload naming its digest and this signer's reference, signed by gpg.
    pub fn sign_manifest(&self, manifest: &[u8]) -> Result<Vec<u8>> {
        let digest = manifest_digest(manifest)?;
        let payload = Payload::new(digest.as_str(), self.docker_reference.as_str());
        self.sign_payload(&payload.to_json())
    }

    /// `gpg --sign` of `payload`: a binary OpenPGP signed message.
    pub fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let mut cmd = Command::new(&self.program);
        if let Some(home) = &self.home {
            cmd.env("GNUPGHOME", home);
        }
        cmd.args([
            "--batch",
            "--no-armor",
            "--sign",
            "--output",
            "-",
            "--local-user",
        ])
        .arg(&self.key);
        let passphrase_pipe = match &self.passphrase {
            Some(_) => {
                let (read, write) = inheritable_pipe()?;
                cmd.args(["--pinentry-mode", "loopback", "--passphrase-fd"])
                    .arg(read.as_raw_fd().to_string());
                Some((read, write))
            }
            None => None,
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("--sign-by {}", self.key);
        let mut child = cmd.spawn().map_err(|e| {
            Error::io(
                format!("{what}: running {}", self.program.to_string_lossy()),
                e,
            )
        })?;
        if let Some((read, write)) = passphrase_pipe {
            drop(read);
            let mut write = std::fs::File::from(write);
            let line = format!("{}\n", self.passphrase.as_deref().unwrap_or_default());
            // gpg may exit before reading it (unknown key): a broken pipe is
            // reported through its exit status below.
            let _ = write.write_all(line.as_bytes());
        }
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let writer = std::thread::spawn({
            let payload = payload.to_vec();
            move || {
                let _ = stdin.write_all(&payload);
            }
        });
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut signature = Vec::new();
        let read = child
            .stdout
            .take()
            .expect("stdout is piped")
            .read_to_end(&mut signature);
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("{what}: waiting for gpg"), e))?;
        let _ = writer.join();
        let stderr = err_reader.join().unwrap_or_default();
        read.map_err(|e| Error::io(format!("{what}: reading gpg's output"), e))?;
        if !status.success() || signature.is_empty() {
            return Err(Error::Other(format!(
                "{what}: gpg failed ({status}): {}",
                last_gpg_line(&stderr)
            )));
        }
        Ok(signature)
    }
}

impl Signer for GpgSigner {
    /// The digest is recomputed from `manifest` as containers/image does (a
    /// schema 1 manifest's differs from the sha256 of its bytes).
    fn sign(&self, manifest: &[u8], _manifest_digest: &str) -> Result<Vec<u8>> {
        self.sign_manifest(manifest)
    }
}

/// A pipe whose read end a child inherits (its write end does not).
fn inheritable_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io(
            "creating a pipe for gpg",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETFD on a descriptor we own.
    if unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(Error::io(
            "creating a pipe for gpg",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((read, write))
}

/// The most telling line of gpg's complaints (its last non-empty one).
fn last_gpg_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_string()
}
