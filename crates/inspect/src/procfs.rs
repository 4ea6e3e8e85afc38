//! The process side: which processes hold which sockets, from one walk of
//! `/proc/*/fd`.
//!
//! Each descriptor in `/proc/PID/fd` is a symbolic link; a socket's reads
//! `socket:[INODE]`. The walk is the hot path of `portwall ports` (a server
//! with 20,000 sockets has 20,000 links to read), so it is written against
//! `rustix` directly:
//!
//! - directories are read with `getdents64` into a reused buffer
//!   ([`rustix::fs::RawDir`]), and names are used as the C strings the kernel
//!   gave, relative to an open directory (`openat`, `readlinkat`): no path is
//!   built or allocated per descriptor;
//! - `/proc` entries that are not process ids are skipped by their name;
//! - two threads share the walk, taking processes one at a time, while the
//!   caller's thread first runs the netlink dump (see `collect` in lib.rs);
//!   only the inodes of the sockets asked for end up in the map, and program
//!   names are read only for their owners;
//! - a process that exits mid-walk (`ENOENT`, `ESRCH`) or whose descriptors
//!   cannot be read (`EACCES`, `EPERM`: another user's process when not root)
//!   is skipped: its sockets then have no owner rather than a wrong one.

use crate::{InspectError, Owner};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, RawDir, CWD};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of directory entries read per `getdents64` call.
const DIR_BUFFER: usize = 64 * 1024;

/// One walk of `/proc/*/fd`, which up to two threads can share: each calls
/// [`Walk::work`], which takes processes one at a time until none are left.
#[derive(Debug)]
pub(crate) struct Walk {
    proc_dir: OwnedFd,
    pids: Vec<u32>,
    next: AtomicUsize,
    stopped: AtomicBool,
}

/// A socket descriptor seen in the walk: (socket inode, pid holding it).
pub(crate) type Seen = (u64, u32);

impl Walk {
    /// Opens `/proc` and lists its processes.
    pub(crate) fn start() -> Result<Walk, InspectError> {
        let proc_dir = open_dir(CWD, c"/proc").map_err(|e| proc_error("/proc", e))?;
        let mut buf: Vec<u8> = Vec::with_capacity(DIR_BUFFER);
        let mut pids = Vec::with_capacity(512);
        let mut dir = RawDir::new(&proc_dir, buf.spare_capacity_mut());
        while let Some(entry) = dir.next() {
            let entry = entry.map_err(|e| proc_error("/proc", e))?;
            if let Some(pid) = parse_decimal(entry.file_name().to_bytes()) {
                if let Ok(pid) = u32::try_from(pid) {
                    pids.push(pid);
                }
            }
        }
        Ok(Walk {
            proc_dir,
            pids,
            next: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    /// Makes every [`Walk::work`] return at its next process.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Scans processes not yet taken by another thread and returns every
    /// socket descriptor seen in them.
    pub(crate) fn work(&self) -> Result<Vec<Seen>, InspectError> {
        let mut seen = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(DIR_BUFFER);
        while !self.stopped.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&pid) = self.pids.get(i) else {
                break;
            };
            match scan_process(&self.proc_dir, pid, &mut buf, &mut seen) {
                Ok(()) => {}
                Err(e) if vanished_or_hidden(e) => {}
                Err(e) => {
                    self.stop();
                    return Err(proc_error(&format!("/proc/{pid}/fd"), e));
                }
            }
        }
        Ok(seen)
    }

    /// The owners of the sockets in `wanted`, by inode, from what the walk
    /// saw. Program names are read now, once per process; a process that has
    /// exited since its descriptors were read owns nothing any more, and is
    /// left out. Inodes that no process holds are absent.
    pub(crate) fn owners(
        &self,
        mut seen: Vec<Seen>,
        wanted: &HashSet<u64>,
    ) -> HashMap<u64, Vec<Owner>> {
        seen.retain(|(inode, _)| wanted.contains(inode));
        // By pid, so that each name is read once; a process holding the same
        // socket twice (dup) counts once.
        seen.sort_unstable_by_key(|&(inode, pid)| (pid, inode));
        seen.dedup();
        let mut owners: HashMap<u64, Vec<Owner>> = HashMap::with_capacity(seen.len());
        let mut current: Option<(u32, Option<String>)> = None;
        for (inode, pid) in seen {
            if current.as_ref().map(|(p, _)| *p) != Some(pid) {
                current = Some((pid, read_comm(&self.proc_dir, pid)));
            }
            if let Some((_, Some(name))) = &current {
                owners.entry(inode).or_default().push(Owner {
                    pid,
                    name: name.clone(),
                });
            }
        }
        owners
    }
}

fn proc_error(path: &str, e: Errno) -> InspectError {
    InspectError::Proc {
        path: path.to_string(),
        error: e.into(),
    }
}

/// Errors that mean "this process is gone or not ours to look at".
fn vanished_or_hidden(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::SRCH | Errno::ACCESS | Errno::PERM)
}

fn open_dir<Fd: AsFd>(dir: Fd, path: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Reads every descriptor of `pid` and pushes the sockets among them.
fn scan_process(
    proc_dir: &OwnedFd,
    pid: u32,
    buf: &mut Vec<u8>,
    seen: &mut Vec<Seen>,
) -> Result<(), Errno> {
    let mut path = [0u8; 32];
    let fd_dir = open_dir(proc_dir, pid_path(&mut path, pid, b"/fd"))?;
    let mut link = [MaybeUninit::<u8>::uninit(); 64];
    let mut dir = RawDir::new(&fd_dir, buf.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        let target = match rustix::fs::readlinkat_raw(&fd_dir, name, &mut link) {
            Ok((target, _)) => target,
            // The descriptor was closed since the directory was read.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        if let Some(inode) = parse_socket_link(target) {
            seen.push((inode, pid));
        }
    }
    Ok(())
}

/// The program name of `pid` (`/proc/PID/comm` without its newline), or
/// `None` when the process is gone.
fn read_comm(proc_dir: &OwnedFd, pid: u32) -> Option<String> {
    let mut path = [0u8; 32];
    let fd = rustix::fs::openat(
        proc_dir,
        pid_path(&mut path, pid, b"/comm"),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    Some(parse_comm(&buf[..n]))
}

/// `comm` content to a name: the trailing newline removed, invalid UTF-8
/// (a name cut mid-character by the kernel's 15-byte limit) replaced.
fn parse_comm(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `"<pid><suffix>\0"` into `buf` and returns it as a C string.
fn pid_path<'a>(buf: &'a mut [u8; 32], pid: u32, suffix: &[u8]) -> &'a CStr {
    let mut digits = [0u8; 10];
    let mut n = pid;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let len = digits.len() + suffix.len();
    buf[..digits.len()].copy_from_slice(digits);
    buf[digits.len()..len].copy_from_slice(suffix);
    buf[len] = 0;
    // The bytes are digits, the suffix (no NUL) and one final NUL.
    CStr::from_bytes_with_nul(&buf[..=len]).unwrap_or(c"")
}

/// The inode of a descriptor link `socket:[INODE]`, or `None` for anything
/// else (files, pipes, anonymous inodes, a malformed link).
fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    parse_decimal(digits)
}

/// A non-empty string of ASCII digits as a number (no sign, no overflow).
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"socket:[0]"), Some(0));
        assert_eq!(
            parse_socket_link(b"socket:[18446744073709551615]"),
            Some(u64::MAX)
        );
        assert_eq!(parse_socket_link(b"socket:[18446744073709551616]"), None);
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"socket:[12a]"), None);
        assert_eq!(parse_socket_link(b"socket:[123"), None);
        assert_eq!(parse_socket_link(b"pipe:[123]"), None);
        assert_eq!(parse_socket_link(b"anon_inode:[eventfd]"), None);
        assert_eq!(parse_socket_link(b"/tmp/socket:[1]"), None);
        assert_eq!(parse_socket_link(b""), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"1"), Some(1));
        assert_eq!(parse_decimal(b"4194304"), Some(4_194_304));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"self"), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"123456789012345678901"), None);
    }

    #[test]
    fn pid_paths() {
        let mut buf = [0u8; 32];
        assert_eq!(pid_path(&mut buf, 0, b"/fd"), c"0/fd");
        assert_eq!(pid_path(&mut buf, 1, b"/fd"), c"1/fd");
        assert_eq!(pid_path(&mut buf, 4_194_304, b"/comm"), c"4194304/comm");
        assert_eq!(pid_path(&mut buf, u32::MAX, b"/comm"), c"4294967295/comm");
    }

    #[test]
    fn comm_names() {
        assert_eq!(parse_comm(b"sshd\n"), "sshd");
        assert_eq!(parse_comm(b"sshd"), "sshd");
        assert_eq!(parse_comm(b"a b\n"), "a b");
        assert_eq!(parse_comm(b"\n"), "");
        // "é" cut in half by the kernel's limit.
        assert_eq!(parse_comm(b"caf\xc3\n"), "caf\u{fffd}");
    }

    #[test]
    fn finds_our_own_socket() {
        use std::os::fd::AsRawFd;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dup = socket.try_clone().unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).unwrap();
        let inode = parse_socket_link(link.to_string_lossy().as_bytes()).unwrap();

        let walk = Walk::start().unwrap();
        let me = std::process::id();
        assert!(walk.pids.contains(&me));
        let seen = walk.work().unwrap();
        // Both descriptors of the socket are seen...
        assert_eq!(seen.iter().filter(|s| **s == (inode, me)).count(), 2);
        // ...and the walk is done: a second worker finds nothing left.
        assert!(walk.work().unwrap().is_empty());

        // ...but the process owns it once.
        let wanted: HashSet<u64> = [inode, u64::MAX].into_iter().collect();
        let owners = walk.owners(seen, &wanted);
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        assert_eq!(
            owners.get(&inode),
            Some(&vec![Owner {
                pid: me,
                name: comm.trim_end_matches('\n').to_string()
            }])
        );
        // An inode no process holds has no entry.
        assert!(!owners.contains_key(&u64::MAX));
        drop(dup);
    }

    #[test]
    fn stopped_walk_does_nothing() {
        let walk = Walk::start().unwrap();
        walk.stop();
        assert!(walk.work().unwrap().is_empty());
    }

    #[test]
    fn owners_skip_vanished_processes() {
        let walk = Walk::start().unwrap();
        // No process has pid u32::MAX (the kernel's limit is 2^22).
        let seen = vec![(7, u32::MAX), (7, std::process::id())];
        let wanted: HashSet<u64> = [7].into_iter().collect();
        let owners = walk.owners(seen, &wanted);
        let pids: Vec<u32> = owners[&7].iter().map(|o| o.pid).collect();
        assert_eq!(pids, vec![std::process::id()]);
    }
}
