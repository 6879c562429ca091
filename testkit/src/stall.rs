//! A disk that can be stalled on demand, for the disk-stall test and bench: a FUSE mount
//! (fuse-overlayfs in the foreground over a directory of the caller's) whose daemon is stopped
//! with SIGSTOP — every write and fsync on the mount then blocks until SIGCONT. A real stall,
//! as a suspended device-mapper device would give (this kernel may have no device-mapper).
//! Needs root, `/dev/fuse`, `fuse-overlayfs` and `fusermount3` (`scripts/test-deps.sh`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A FUSE mount that can be stalled: fuse-overlayfs in the foreground, its upper dir real.
#[derive(Debug)]
pub struct StallableDisk {
    daemon: Child,
    pub mount: PathBuf,
    /// Where the files really are: read it directly to see what reached the disk.
    pub upper: PathBuf,
    stopped: bool,
}

impl StallableDisk {
    /// Mounts a new one under `dir`; panics naming the fix when FUSE is unavailable.
    pub fn mount(dir: &Path) -> Self {
        let missing: Vec<&str> = [
            ("/dev/fuse", Path::new("/dev/fuse").exists()),
            ("fuse-overlayfs", which("fuse-overlayfs")),
            ("fusermount3", which("fusermount3")),
        ]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| what)
        .collect();
        assert!(
            missing.is_empty(),
            "the disk-stall test needs FUSE: missing {missing:?}; run `sudo bash scripts/test-deps.sh` \
             (installs fuse-overlayfs and fuse3) on a kernel with FUSE (/dev/fuse)"
        );
        let [lower, upper, work, mount] = ["lower", "upper", "work", "mnt"].map(|d| dir.join(d));
        for d in [&lower, &upper, &work, &mount] {
            std::fs::create_dir_all(d).expect("create dir");
        }
        let daemon = Command::new("fuse-overlayfs")
            .arg("-f")
            .arg("-o")
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&mount)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fuse-overlayfs");
        let disk = Self {
            daemon,
            mount,
            upper,
            stopped: false,
        };
        // Bounded: the mount appears within 10 s or the test fails.
        let probe = disk.mount.join(".mounted");
        for _ in 0..200 {
            if is_fuse_mount(&disk.mount) && std::fs::write(&probe, b"1").is_ok() {
                return disk;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "fuse-overlayfs did not mount {} (needs root and /dev/fuse: run as root after `sudo bash scripts/test-deps.sh`)",
            disk.mount.display()
        );
    }

    fn signal(&mut self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.daemon.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} fuse-overlayfs");
    }

    /// Every I/O on the mount blocks from now on.
    pub fn stall(&mut self) {
        self.signal("-STOP");
        self.stopped = true;
    }

    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.stopped = false;
    }
}

impl Drop for StallableDisk {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new("kill")
                .args(["-CONT", &self.daemon.id().to_string()])
                .status();
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.mount)
            .status();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn is_fuse_mount(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let target = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(target.as_str()) && l.contains("fuse"))
}
