//! The trust rules a plugin file passes before kpod reads or loads it, as
//! sshd's `StrictModes` and sudo's plugin checks have them: the file, and
//! every directory from it up to `/`, owned by root or by the user running
//! kpod (its effective user), and not writable by group or others. A group-
//! or world-writable directory is accepted only with the sticky bit (like
//! `/tmp`): then nobody else can rename or replace the entries in it, which
//! the rules already require root or the user to own. A symbolic link in a
//! plugin directory is followed, and both the link (in its directory) and the
//! file it leads to are checked.

use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Who may own plugin files and the directories above them.
#[derive(Debug, Clone, Copy)]
struct Owners {
    euid: u32,
}

impl Owners {
    fn current() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Owners {
            euid: unsafe { libc::geteuid() },
        }
    }

    fn check(&self, path: &Path, meta: &Metadata) -> Result<(), String> {
        let uid = meta.uid();
        if uid == 0 || uid == self.euid {
            return Ok(());
        }
        Err(format!(
            "{} is owned by uid {uid}, not by root or the user running kpod (uid {})",
            path.display(),
            self.euid
        ))
    }
}

/// Whether kpod runs with raised privileges (setuid or setgid): then the
/// environment is the caller's, not to be trusted.
pub fn raised_privileges() -> bool {
    // SAFETY: these getters have no preconditions and cannot fail.
    unsafe { libc::geteuid() != libc::getuid() || libc::getegid() != libc::getgid() }
}

const GROUP_OTHER_WRITE: u32 = 0o022;

/// Checks the plugin file `entry` and everything above it, then opens the
/// file it names (the link's target for a link). The error is one line naming
/// the file or directory and the rule it breaks.
pub fn open_trusted(entry: &Path) -> Result<File, String> {
    let owners = Owners::current();
    let lstat = |p: &Path| {
        std::fs::symlink_metadata(p).map_err(|e| format!("checking {}: {e}", p.display()))
    };
    let parent = entry
        .parent()
        .ok_or_else(|| format!("{} has no directory", entry.display()))?;
    let parent = parent
        .canonicalize()
        .map_err(|e| format!("resolving {}: {e}", parent.display()))?;
    let meta = lstat(entry)?;
    let real: PathBuf = if meta.file_type().is_symlink() {
        // The link itself: only its owner may replace it in a sticky directory.
        owners.check(entry, &meta)?;
        check_directories(&parent, owners)?;
        entry
            .canonicalize()
            .map_err(|e| format!("following the link {}: {e}", entry.display()))?
    } else {
        entry.to_path_buf()
    };
    let meta = lstat(&real)?;
    check_file(&real, &meta, owners)?;
    if let Some(dir) = real.parent() {
        let dir = if real == entry {
            parent
        } else {
            dir.to_path_buf()
        };
        check_directories(&dir, owners)?;
    }
    // O_NOFOLLOW: the checked path must still be the file, not a new link.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&real)
        .map_err(|e| format!("opening {}: {e}", real.display()))?;
    let opened = file
        .metadata()
        .map_err(|e| format!("checking {}: {e}", real.display()))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(format!("{} changed while it was checked", real.display()));
    }
    Ok(file)
}

fn check_file(path: &Path, meta: &Metadata, owners: Owners) -> Result<(), String> {
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    owners.check(path, meta)?;
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OTHER_WRITE != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {mode:04o})",
            path.display()
        ));
    }
    Ok(())
}

/// `dir` (canonical) and each directory above it.
fn check_directories(dir: &Path, owners: Owners) -> Result<(), String> {
    for dir in dir.ancestors() {
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("checking {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        owners.check(dir, &meta)?;
        let mode = meta.mode() & 0o7777;
        if mode & GROUP_OTHER_WRITE != 0 && mode & libc::S_ISVTX == 0 {
            return Err(format!(
                "directory {} is writable by group or others and not sticky (mode {mode:04o})",
                dir.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn modes_decide() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        chmod(&file, 0o644);
        assert!(open_trusted(&file).is_ok());

        chmod(&file, 0o664);
        let err = open_trusted(&file).unwrap_err();
        assert!(
            err.contains("writable by group or others (mode 0664)"),
            "{err}"
        );
        chmod(&file, 0o644);

        chmod(dir.path(), 0o777);
        let err = open_trusted(&file).unwrap_err();
        assert!(err.contains("not sticky (mode 0777)"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");

        // A sticky world-writable directory, like /tmp, is fine.
        chmod(dir.path(), 0o1777);
        assert!(open_trusted(&file).is_ok());
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn a_link_is_checked_on_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        std::fs::create_dir(&real_dir).unwrap();
        chmod(&real_dir, 0o755);
        let real = real_dir.join("libx.so.1");
        std::fs::write(&real, b"x").unwrap();
        chmod(&real, 0o644);
        let link = dir.path().join("libx.so");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(open_trusted(&link).is_ok());
        chmod(&real_dir, 0o775);
        let err = open_trusted(&link).unwrap_err();
        assert!(err.contains("real"), "{err}");
    }
}
