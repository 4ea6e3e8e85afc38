//! The process side: which processes hold which sockets, from one walk of
//! `/proc/*/fd`.
//!
//! Each descriptor in `/proc/PID/fd` is a symbolic link; a socket's reads
//! `socket:[INODE]`. The walk is the hot path of `portwall ports` (a server
//! with 20,000 sockets has 20,000 links to read), and nearly all of its time
//! is spent in the kernel: a `readlinkat` costs a path lookup in `/proc` (a
//! few microseconds, whatever the caller does), and listing a descriptor
//! directory costs about a microsecond per descriptor. So the walk does the
//! least work per descriptor it can, and spreads the descriptors over the
//! cores:
//!
//! - it is written against `rustix` directly: directories are read with
//!   `getdents64` into a reused 64 KiB buffer ([`rustix::fs::RawDir`]), and
//!   links are read with `readlinkat` relative to the open descriptor
//!   directory, their names written into a stack buffer: nothing is allocated
//!   or built per descriptor, and no path is resolved twice;
//! - `/proc` entries that are not process ids are skipped by their name;
//! - the work is shared by a few threads (see [`Walk::work`]): a thread takes
//!   the next process, lists its descriptors, and reads them [`CHUNK`] at a
//!   time; when there are more (a server process with thousands of sockets),
//!   the other threads can take chunks of them too once they have no process
//!   of their own left, so one large process does not leave a core idle;
//! - a process that exits mid-walk (`ENOENT`, `ESRCH`) or whose descriptors
//!   cannot be read (`EACCES`, `EPERM`: another user's process when not root)
//!   is skipped: its sockets then have no owner rather than a wrong one.
//!
//! The walk never stops early: a socket can be shared by several processes
//! (after `fork`, or passed over a unix socket), and nothing short of reading
//! every descriptor says that no other process holds it too.

use crate::{InspectError, Owner, Socket};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, RawDir, CWD};
use rustix::io::Errno;
use std::cmp::Ordering as Order;
use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// Bytes of directory entries read per `getdents64` call.
const DIR_BUFFER: usize = 64 * 1024;

/// Descriptors of one process that a thread reads before it looks for other
/// work: a few milliseconds of `readlinkat`, small enough that the threads
/// finish together, large enough that handing out work costs nothing.
const CHUNK: usize = 512;

/// Sockets per thread that builds owners: fewer are done by one thread.
const OWNERS_PER_THREAD: usize = 4096;

/// The most threads that share a walk, the caller's included. The walk is
/// bound by the kernel's `/proc` lookups, which scale with cores; beyond a
/// few threads, starting them costs more than it brings.
const MAX_THREADS: usize = 8;

/// How many threads to start besides the caller's: one per core this process
/// may run on (its CPU affinity and cgroup quota), up to [`MAX_THREADS`] in
/// all, and at least one, so that the walk overlaps the caller's netlink dump.
pub(crate) fn helper_threads() -> usize {
    // Asked once per process: the answer reads cgroup files.
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    cores.clamp(2, MAX_THREADS) - 1
}

/// One walk of `/proc/*/fd`, which any number of threads can share: each
/// calls [`Walk::work`] until no work is left.
#[derive(Debug)]
pub(crate) struct Walk {
    proc_dir: OwnedFd,
    pids: Vec<u32>,
    /// The index in `pids` of the next process to take.
    next: AtomicUsize,
    stopped: AtomicBool,
    shared: Mutex<Shared>,
    /// Signalled when chunks are handed out, a listing ends, or the walk stops.
    wake: Condvar,
}

/// Work handed from one thread to the others.
#[derive(Debug, Default)]
struct Shared {
    /// Descriptors listed by one thread and not read yet, by process.
    pending: Vec<Pending>,
    /// Threads listing a descriptor directory now: they may hand out work,
    /// so a thread with nothing to do waits for them rather than leaving.
    listing: usize,
}

/// The descriptors `front..back` of a process, not read yet. The thread that
/// listed them takes chunks from the front; others take them from the back.
#[derive(Debug)]
struct Pending {
    process: Arc<Descriptors>,
    front: usize,
    back: usize,
}

/// Some descriptors of a process, to read.
#[derive(Debug)]
struct Chunk {
    process: Arc<Descriptors>,
    start: usize,
    end: usize,
}

/// A process's open descriptor directory and the descriptors it listed.
#[derive(Debug)]
struct Descriptors {
    pid: u32,
    dir: OwnedFd,
    fds: Vec<u32>,
}

/// A socket descriptor seen in the walk: (socket inode, pid holding it).
pub(crate) type Seen = (u64, u32);

/// Counts a thread as listing while it lives.
struct Listing<'a>(&'a Walk);

impl<'a> Listing<'a> {
    fn new(walk: &'a Walk) -> Listing<'a> {
        walk.lock().listing += 1;
        Listing(walk)
    }
}

impl Drop for Listing<'_> {
    fn drop(&mut self) {
        self.0.lock().listing -= 1;
        self.0.wake.notify_all();
    }
}

impl Walk {
    /// Opens `/proc` and lists its processes.
    pub(crate) fn start() -> Result<Walk, InspectError> {
        let proc_dir = open_proc()?;
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
            shared: Mutex::default(),
            wake: Condvar::new(),
        })
    }

    /// The `/proc` directory the walk read, for program names.
    pub(crate) fn into_proc_dir(self) -> OwnedFd {
        self.proc_dir
    }

    /// The `/proc` directory and the processes listed in it.
    fn into_proc_dir_with_pids(self) -> (OwnedFd, Vec<u32>) {
        (self.proc_dir, self.pids)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // The shared state stays consistent whatever a thread panicked in.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every [`Walk::work`] return at its next step.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Under the lock, so that no thread can miss the wake-up between
        // seeing the flag unset and waiting.
        let _shared = self.lock();
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Reads descriptors until no work is left (or the walk is stopped) and
    /// returns every socket descriptor this thread saw, sorted, each
    /// (inode, pid) once.
    ///
    /// Work is taken in this order: the rest of the process this thread is
    /// reading, the next process, the rest of another thread's process;
    /// with none left, the thread waits while another one is still listing
    /// a process (it may hand out work), then returns. Threads stay on
    /// different processes as long as they can: reading a descriptor link
    /// takes a lock of its process in the kernel.
    pub(crate) fn work(&self) -> Result<Vec<Seen>, InspectError> {
        let mut seen = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(DIR_BUFFER);
        let mut current: Option<u32> = None;
        // Each turn reads a chunk or takes a process, or waits for a listing
        // to end: the walk ends after at most one turn per process, per
        // chunk and per listing, plus one.
        while !self.is_stopped() {
            if let Some(chunk) = current.and_then(|pid| self.take_chunk(Some(pid))) {
                self.read_chunk(&chunk, &mut seen)?;
                continue;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if let Some(&pid) = self.pids.get(i) {
                current = Some(pid);
                self.take_process(pid, &mut buf, &mut seen)?;
                continue;
            }
            if let Some(chunk) = self.take_chunk(None) {
                // Away from the front, where the thread that listed the
                // process reads: the next chunk is taken from the back too.
                current = None;
                self.read_chunk(&chunk, &mut seen)?;
                continue;
            }
            let mut shared = self.lock();
            while shared.pending.is_empty() && shared.listing > 0 && !self.is_stopped() {
                shared = self
                    .wake
                    .wait(shared)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if shared.pending.is_empty() {
                break;
            }
        }
        // Sorted here, on each thread, so that the caller only merges.
        seen.sort_unstable();
        seen.dedup();
        Ok(seen)
    }

    /// The next chunk of the process `pid`, from the front; or with `None`,
    /// the last chunk of the process with the most left.
    fn take_chunk(&self, pid: Option<u32>) -> Option<Chunk> {
        let mut shared = self.lock();
        let pending = &mut shared.pending;
        let i = match pid {
            Some(pid) => pending.iter().position(|p| p.process.pid == pid)?,
            None => (0..pending.len()).max_by_key(|&i| pending[i].back - pending[i].front)?,
        };
        let p = &mut pending[i];
        let (start, end) = if pid.is_some() {
            let end = (p.front + CHUNK).min(p.back);
            (std::mem::replace(&mut p.front, end), end)
        } else {
            let start = p.back.saturating_sub(CHUNK).max(p.front);
            (start, std::mem::replace(&mut p.back, start))
        };
        let chunk = Chunk {
            process: Arc::clone(&p.process),
            start,
            end,
        };
        if p.front >= p.back {
            pending.swap_remove(i);
        }
        Some(chunk)
    }

    /// Lists the descriptors of `pid`, hands out all but the first
    /// [`CHUNK`] of them, and reads those.
    fn take_process(
        &self,
        pid: u32,
        buf: &mut Vec<u8>,
        seen: &mut Vec<Seen>,
    ) -> Result<(), InspectError> {
        let listing = Listing::new(self);
        let process = match list_descriptors(&self.proc_dir, pid, buf) {
            Ok(process) => Arc::new(process),
            Err(e) if vanished_or_hidden(e) => return Ok(()),
            Err(e) => {
                self.stop();
                return Err(proc_error(&format!("/proc/{pid}/fd"), e));
            }
        };
        let total = process.fds.len();
        if total > CHUNK {
            self.lock().pending.push(Pending {
                process: Arc::clone(&process),
                front: CHUNK,
                back: total,
            });
        }
        // Ends the listing and wakes the threads waiting for work.
        drop(listing);
        self.read(&process, &process.fds[..total.min(CHUNK)], seen)
    }

    fn read_chunk(&self, chunk: &Chunk, seen: &mut Vec<Seen>) -> Result<(), InspectError> {
        let process = &chunk.process;
        self.read(process, &process.fds[chunk.start..chunk.end], seen)
    }

    /// Reads the links of `fds` of `process`. A process that exits or hides
    /// its descriptors meanwhile is skipped from there on.
    fn read(
        &self,
        process: &Descriptors,
        fds: &[u32],
        seen: &mut Vec<Seen>,
    ) -> Result<(), InspectError> {
        match read_links(process, fds, seen) {
            Ok(()) => Ok(()),
            Err(e) if vanished_or_hidden(e) => Ok(()),
            Err(e) => {
                self.stop();
                Err(proc_error(&format!("/proc/{}/fd", process.pid), e))
            }
        }
    }
}

/// Gives each socket of `sockets` the processes that hold it, from what
/// the walk saw (`seen`: sorted, each (inode, pid) once), in the order of
/// their pids. Program names are read now, once per process; a process
/// that has exited since its descriptors were read owns nothing any
/// more, and is left out. A socket that no process holds keeps no owner.
///
/// Building the owners allocates for every socket; with many sockets,
/// parts of them are done by as many threads as a walk has.
pub(crate) fn assign_owners(proc_dir: &OwnedFd, seen: &[Seen], sockets: &mut [Socket]) {
    let names = Mutex::new(HashMap::new());
    let threads = (helper_threads() + 1)
        .min(sockets.len() / OWNERS_PER_THREAD)
        .max(1);
    if threads == 1 {
        assign_part(proc_dir, seen, sockets, &names);
        return;
    }
    let size = sockets.len().div_ceil(threads);
    let parts = Mutex::new(sockets.chunks_mut(size).collect::<Vec<_>>());
    let work = || loop {
        let part = parts.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some(part) = part else { break };
        assign_part(proc_dir, seen, part, &names);
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .map_while(|_| {
                std::thread::Builder::new()
                    .name("inspect-owners".into())
                    .spawn_scoped(scope, work)
                    // The threads started (this one at least) do it all.
                    .ok()
            })
            .collect();
        work();
        for helper in helpers {
            helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    });
}

/// [`assign_owners`] for one part of the sockets. Program names
/// are shared between parts through `names`.
fn assign_part(
    proc_dir: &OwnedFd,
    seen: &[Seen],
    sockets: &mut [Socket],
    names: &Mutex<HashMap<u32, Option<String>>>,
) {
    // Both sides sorted by inode, then merged.
    let mut by_inode: Vec<(u64, usize)> = sockets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.inode != 0)
        .map(|(i, s)| (s.inode, i))
        .collect();
    by_inode.sort_unstable();
    let mut mine: HashMap<u32, Option<String>> = HashMap::new();
    let (mut a, mut b) = (0, 0);
    while a < by_inode.len() && b < seen.len() {
        let inode = by_inode[a].0;
        match inode.cmp(&seen[b].0) {
            Order::Less => a += 1,
            Order::Greater => b += 1,
            Order::Equal => {
                let a_end = a + run(&by_inode[a..], |&(i, _)| i == inode);
                let b_end = b + run(&seen[b..], |&(i, _)| i == inode);
                for &(_, index) in &by_inode[a..a_end] {
                    // Usually one owner: no room for more.
                    sockets[index].owners.reserve_exact(b_end - b);
                }
                for &(_, pid) in &seen[b..b_end] {
                    let name = mine.entry(pid).or_insert_with(|| {
                        names
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(pid)
                            .or_insert_with(|| read_comm(proc_dir, pid))
                            .clone()
                    });
                    let Some(name) = name else { continue };
                    for &(_, index) in &by_inode[a..a_end] {
                        sockets[index].owners.push(Owner {
                            pid,
                            name: name.clone(),
                        });
                    }
                }
                (a, b) = (a_end, b_end);
            }
        }
    }
}

/// The length of the run of leading items of `items` that satisfy `same`.
fn run<T>(items: &[T], same: impl Fn(&T) -> bool) -> usize {
    items.iter().take_while(|item| same(item)).count()
}

fn proc_error(path: &str, e: Errno) -> InspectError {
    InspectError::Proc {
        path: path.to_string(),
        error: e.into(),
    }
}

/// The socket inodes held by the processes whose program name is `name`:
/// `/proc/*/comm` of every process, then the descriptors of those processes
/// only. Cheap when few processes have that name (the SSH lockout check
/// asks for `sshd`, whose listener has a handful of descriptors), where the
/// full walk or the task-file iterator reads every process's descriptors.
pub(crate) fn sockets_of_named(name: &str) -> Result<Vec<u64>, InspectError> {
    let (proc_dir, pids) = Walk::start()?.into_proc_dir_with_pids();
    let mut buf: Vec<u8> = Vec::with_capacity(DIR_BUFFER);
    let mut seen: Vec<Seen> = Vec::new();
    for pid in pids {
        if read_comm(&proc_dir, pid).as_deref() != Some(name) {
            continue;
        }
        let process = match list_descriptors(&proc_dir, pid, &mut buf) {
            Ok(p) => p,
            Err(e) if vanished_or_hidden(e) => continue,
            Err(e) => return Err(proc_error("/proc/PID/fd", e)),
        };
        match read_links(&process, &process.fds, &mut seen) {
            Ok(()) => {}
            Err(e) if vanished_or_hidden(e) => {}
            Err(e) => return Err(proc_error("/proc/PID/fd", e)),
        }
    }
    let mut inodes: Vec<u64> = seen.into_iter().map(|(inode, _)| inode).collect();
    inodes.sort_unstable();
    inodes.dedup();
    Ok(inodes)
}

/// Opens `/proc`, where program names (and, for a walk, descriptors) are read.
pub(crate) fn open_proc() -> Result<OwnedFd, InspectError> {
    open_dir(CWD, c"/proc").map_err(|e| proc_error("/proc", e))
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

/// Opens `/proc/PID/fd` and lists the descriptors in it.
fn list_descriptors(proc_dir: &OwnedFd, pid: u32, buf: &mut Vec<u8>) -> Result<Descriptors, Errno> {
    let mut path = [0u8; 32];
    let dir = open_dir(proc_dir, pid_path(&mut path, pid, b"/fd"))?;
    let mut fds = Vec::new();
    let mut entries = RawDir::new(&dir, buf.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        // `.` and `..` are not numbers.
        if let Some(fd) = parse_decimal(entry?.file_name().to_bytes()) {
            if let Ok(fd) = u32::try_from(fd) {
                fds.push(fd);
            }
        }
    }
    Ok(Descriptors { pid, dir, fds })
}

/// Reads the links `fds` of `process` and pushes the sockets among them.
fn read_links(process: &Descriptors, fds: &[u32], seen: &mut Vec<Seen>) -> Result<(), Errno> {
    let mut name = [0u8; 16];
    let mut link = [MaybeUninit::<u8>::uninit(); 64];
    for &fd in fds {
        let target =
            match rustix::fs::readlinkat_raw(&process.dir, fd_name(&mut name, fd), &mut link) {
                Ok((target, _)) => target,
                // The descriptor was closed since the directory was read.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e),
            };
        if let Some(inode) = parse_socket_link(target) {
            seen.push((inode, process.pid));
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

/// Writes the decimal digits of `n` at the end of `buf` and returns where
/// they start.
fn write_decimal(buf: &mut [u8], end: usize, mut n: u32) -> usize {
    let mut start = end;
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return start;
        }
    }
}

/// Writes `"<fd>\0"` into `buf` and returns it as a C string.
fn fd_name(buf: &mut [u8; 16], fd: u32) -> &CStr {
    buf[15] = 0;
    let start = write_decimal(buf, 15, fd);
    // Digits and one final NUL.
    CStr::from_bytes_with_nul(&buf[start..]).unwrap_or(c"")
}

/// Writes `"<pid><suffix>\0"` into `buf` and returns it as a C string.
fn pid_path<'a>(buf: &'a mut [u8; 32], pid: u32, suffix: &[u8]) -> &'a CStr {
    let mut digits = [0u8; 10];
    let start = write_decimal(&mut digits, 10, pid);
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
    use crate::{Family, Protocol, State};
    use std::collections::HashSet;
    use std::os::fd::AsRawFd;

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
    fn fd_names() {
        let mut buf = [0u8; 16];
        assert_eq!(fd_name(&mut buf, 0), c"0");
        assert_eq!(fd_name(&mut buf, 7), c"7");
        assert_eq!(fd_name(&mut buf, 10), c"10");
        assert_eq!(fd_name(&mut buf, 19_999), c"19999");
        assert_eq!(fd_name(&mut buf, u32::MAX), c"4294967295");
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

    fn socket(inode: u64) -> Socket {
        Socket {
            protocol: Protocol::Udp,
            family: Family::V4,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            state: State::Unconnected,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            user: None,
            inode,
            owners: Vec::new(),
        }
    }

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        parse_socket_link(link.to_string_lossy().as_bytes()).unwrap()
    }

    fn my_comm() -> String {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", std::process::id())).unwrap();
        comm.trim_end_matches('\n').to_string()
    }

    #[test]
    fn finds_our_own_socket() {
        let socket_ = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dup = socket_.try_clone().unwrap();
        let inode = inode_of(&socket_);

        let walk = Walk::start().unwrap();
        let me = std::process::id();
        assert!(walk.pids.contains(&me));
        let seen = walk.work().unwrap();
        // Both descriptors of the socket are seen, as one (inode, pid)...
        assert_eq!(seen.iter().filter(|s| **s == (inode, me)).count(), 1);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        // ...and the walk is done: a second worker finds nothing left.
        assert!(walk.work().unwrap().is_empty());

        // ...and the process owns it once.
        let mut sockets = vec![socket(inode), socket(u64::MAX), socket(0)];
        assign_owners(&walk.proc_dir, &seen, &mut sockets);
        assert_eq!(
            sockets[0].owners,
            vec![Owner {
                pid: me,
                name: my_comm()
            }]
        );
        // An inode no process holds, and a socket without inode, have no owner.
        assert!(sockets[1].owners.is_empty());
        assert!(sockets[2].owners.is_empty());
        drop(dup);
    }

    #[test]
    fn threads_share_large_processes() {
        // More descriptors than a chunk, several times over, so that the
        // listing thread hands chunks out.
        let sockets: Vec<std::net::UdpSocket> = (0..CHUNK * 3 + 7)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let inodes: HashSet<u64> = sockets.iter().map(inode_of).collect();
        assert_eq!(inodes.len(), sockets.len());
        let me = std::process::id();

        let walk = Walk::start().unwrap();
        let seen: Vec<Vec<Seen>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4).map(|_| scope.spawn(|| walk.work())).collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap().unwrap())
                .collect()
        });
        let mine: Vec<u64> = seen
            .iter()
            .flatten()
            .filter(|(inode, pid)| *pid == me && inodes.contains(inode))
            .map(|(inode, _)| *inode)
            .collect();
        // Every socket exactly once, whichever thread read it.
        assert_eq!(mine.len(), inodes.len());
        assert_eq!(mine.iter().copied().collect::<HashSet<u64>>(), inodes);
        // Nothing is left for a latecomer.
        assert!(walk.work().unwrap().is_empty());

        let mut listed: Vec<Socket> = inodes.iter().map(|&i| socket(i)).collect();
        let mut seen: Vec<Seen> = seen.into_iter().flatten().collect();
        seen.sort();
        assign_owners(&walk.proc_dir, &seen, &mut listed);
        assert!(listed
            .iter()
            .all(|s| s.owners.len() == 1 && s.owners[0].pid == me));
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
        let me = std::process::id();
        // No process has pid u32::MAX (the kernel's limit is 2^22).
        let seen = vec![(7, me), (7, u32::MAX), (8, me)];
        let mut sockets = vec![socket(8), socket(7), socket(7)];
        assign_owners(&walk.proc_dir, &seen, &mut sockets);
        let pids = |s: &Socket| s.owners.iter().map(|o| o.pid).collect::<Vec<u32>>();
        assert_eq!(pids(&sockets[0]), vec![me]);
        // A socket listed twice has its owners twice.
        assert_eq!(pids(&sockets[1]), vec![me]);
        assert_eq!(pids(&sockets[2]), vec![me]);
    }

    #[test]
    fn owners_in_pid_order() {
        let walk = Walk::start().unwrap();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let seen = vec![(5, me.min(parent)), (5, me.max(parent))];
        let mut sockets = vec![socket(5)];
        assign_owners(&walk.proc_dir, &seen, &mut sockets);
        let pids: Vec<u32> = sockets[0].owners.iter().map(|o| o.pid).collect();
        assert_eq!(pids, vec![me.min(parent), me.max(parent)]);
    }

    #[test]
    fn owners_of_many_sockets_are_built_in_parts() {
        let walk = Walk::start().unwrap();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let n = 3 * OWNERS_PER_THREAD as u64 + 5;
        // Inode i: held by this process when i % 3 != 0, by its parent
        // too when i % 5 == 0; listed in reverse, 0 and 1 twice.
        let mut seen: Vec<Seen> = (1..=n)
            .flat_map(|i| {
                let mine = (i % 3 != 0).then_some((i, me));
                let parents = (i % 5 == 0).then_some((i, parent));
                mine.into_iter().chain(parents)
            })
            .collect();
        seen.sort();
        let mut sockets: Vec<Socket> = (0..=n).rev().map(socket).collect();
        sockets.push(socket(1));
        assign_owners(&walk.proc_dir, &seen, &mut sockets);
        let comm = my_comm();
        for s in &sockets {
            let mut want: Vec<u32> = Vec::new();
            if s.inode != 0 && s.inode % 3 != 0 {
                want.push(me);
            }
            if s.inode != 0 && s.inode % 5 == 0 {
                want.push(parent);
            }
            want.sort();
            let pids: Vec<u32> = s.owners.iter().map(|o| o.pid).collect();
            assert_eq!(pids, want, "inode {}", s.inode);
            assert!(s.owners.iter().all(|o| o.pid != me || o.name == comm));
        }
    }
}
