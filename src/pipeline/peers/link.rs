//! One connection to a peer, as timely's network threads use it: what timely writes goes out in
//! frames, between which a heartbeat frame goes every fraction of the silence limit, and a goodbye
//! frame when timely closes its side at the end of a run. What is read back is the bytes of the
//! peer's data frames, until its goodbye. A read or write that fails, a connection that ends
//! without a goodbye, or one that brings nothing for the silence limit loses the peer (the
//! [`PeerWatch`] is told); timely never sees the error: its reading thread waits for good and its
//! writes to the lost peer go nowhere.
//!
//! Must not: read timely's messages (frames carry its bytes as they are).

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::stream::Stream;

use super::{Cause, PeerWatch};

/// A frame's header: a big-endian `u32` that is the length of the timely bytes that follow, or
/// one of these.
const HEARTBEAT: u32 = 0;
const GOODBYE: u32 = u32::MAX;
/// `LOST | p`: the sender lost process `p` and is leaving.
const LOST: u32 = 1 << 31;
/// The most timely bytes one frame carries.
pub(super) const MAX_FRAME: usize = 1 << 20;

/// What the frames on one connection say.
pub(super) enum Frame {
    Heartbeat,
    Data(usize),
    Goodbye,
    Lost(usize),
}

impl Frame {
    fn header(&self) -> u32 {
        match *self {
            Frame::Heartbeat => HEARTBEAT,
            Frame::Goodbye => GOODBYE,
            Frame::Lost(peer) => LOST | peer as u32,
            Frame::Data(n) => n as u32,
        }
    }

    fn from_header(header: u32) -> Frame {
        match header {
            HEARTBEAT => Frame::Heartbeat,
            GOODBYE => Frame::Goodbye,
            h if h & LOST != 0 => Frame::Lost((h & !LOST) as usize),
            n => Frame::Data(n as usize),
        }
    }
}

/// One connection to a peer, shared by its [`PeerStream`]s and its heartbeat.
pub(super) struct Link {
    pub peer: usize,
    pub socket: TcpStream,
    /// Held while a frame is written; true once this side is closed.
    pub closed: Mutex<bool>,
    /// The peer is lost: writes are dropped, reads wait forever.
    dead: AtomicBool,
    watch: Arc<PeerWatch>,
    silence: Duration,
}

impl Link {
    /// The connection to `peer` on `socket`, its heartbeat started: a frame every fifth of
    /// `silence` (the time after which a peer that sent nothing is lost), at most a second apart.
    pub fn start(
        peer: usize,
        socket: TcpStream,
        watch: Arc<PeerWatch>,
        silence: Duration,
    ) -> io::Result<Arc<Link>> {
        socket.set_read_timeout(Some(silence))?;
        let link = Arc::new(Link {
            peer,
            socket,
            closed: Mutex::new(false),
            dead: AtomicBool::new(false),
            watch,
            silence,
        });
        let beating = Arc::clone(&link);
        let every = (silence / 5).min(Duration::from_secs(1));
        std::thread::Builder::new()
            .name(format!("heartbeat-{peer}"))
            .spawn(move || {
                while beating.send(&Frame::Heartbeat, &[]) {
                    std::thread::sleep(every);
                }
            })?;
        Ok(link)
    }

    /// Writes one frame, unless this side is closed or the peer lost; false when it did not.
    fn send(&self, frame: &Frame, payload: &[u8]) -> bool {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        self.send_locked(closed, frame, payload)
    }

    /// [`Link::send`], giving up at `deadline` when another frame is being written.
    pub fn send_before(&self, frame: &Frame, deadline: Instant) {
        loop {
            match self.closed.try_lock() {
                Ok(closed) => {
                    self.send_locked(closed, frame, &[]);
                    return;
                }
                Err(std::sync::TryLockError::Poisoned(closed)) => {
                    self.send_locked(closed.into_inner(), frame, &[]);
                    return;
                }
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        }
    }

    fn send_locked(&self, closed: MutexGuard<'_, bool>, frame: &Frame, payload: &[u8]) -> bool {
        if *closed || self.dead.load(Ordering::Acquire) {
            return false;
        }
        match write_frame(&self.socket, frame.header(), payload) {
            Ok(()) => true,
            Err(error) => {
                drop(closed);
                self.watch.lose(self.peer, self.cause_of(error));
                false
            }
        }
    }

    /// The peer is lost: nothing more is written to it or waited for from it.
    pub fn shut_down(&self) {
        self.dead.store(true, Ordering::Release);
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Records what ended a read from the peer, and never returns: timely's thread waits here
    /// (an error returned to it would panic it and poison its workers' queues).
    fn lost_reading(&self, cause: Cause) -> ! {
        self.watch.lose(self.peer, cause);
        loop {
            std::thread::park();
        }
    }

    fn cause_of(&self, error: io::Error) -> Cause {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Cause::Silent(self.silence),
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Cause::Closed,
            _ => Cause::Failed(error),
        }
    }
}

/// Writes a frame's header and payload, whole.
fn write_frame(mut socket: &TcpStream, header: u32, payload: &[u8]) -> io::Result<()> {
    let header = header.to_be_bytes();
    let mut slices = [IoSlice::new(&header), IoSlice::new(payload)];
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match socket.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A connection to a peer as timely sees it: the bytes it writes go out in frames, and it reads
/// back the bytes of the peer's frames, until the peer's goodbye.
pub(in crate::pipeline) struct PeerStream {
    pub(super) link: Arc<Link>,
    /// The reading side's state, made at the first read (timely reads from one handle only).
    reader: Option<FrameReader>,
}

struct FrameReader {
    input: BufReader<TcpStream>,
    /// Bytes of the current data frame not read yet.
    remaining: usize,
    /// The peer said goodbye: its end of the connection comes next.
    goodbye: bool,
}

impl PeerStream {
    pub(super) fn new(link: Arc<Link>) -> PeerStream {
        PeerStream { link, reader: None }
    }

    fn frame_reader(&mut self) -> io::Result<&mut FrameReader> {
        if self.reader.is_none() {
            self.reader = Some(FrameReader {
                input: BufReader::with_capacity(1 << 16, self.link.socket.try_clone()?),
                remaining: 0,
                goodbye: false,
            });
        }
        Ok(self.reader.as_mut().expect("made above"))
    }
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let link = Arc::clone(&self.link);
        let reader = self.frame_reader()?;
        loop {
            if reader.remaining > 0 {
                let wanted = buf.len().min(reader.remaining);
                match reader.input.read(&mut buf[..wanted]) {
                    Ok(0) => link.lost_reading(Cause::Closed),
                    Ok(n) => {
                        reader.remaining -= n;
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => link.lost_reading(link.cause_of(e)),
                }
            }
            match read_header(&mut reader.input) {
                Ok(Some(header)) => match Frame::from_header(header) {
                    Frame::Heartbeat => {}
                    Frame::Data(n) => reader.remaining = n,
                    Frame::Goodbye => reader.goodbye = true,
                    Frame::Lost(peer) => link.watch.lose(peer, Cause::LostBy(link.peer)),
                },
                // The end timely expects after the peer's last message.
                Ok(None) if reader.goodbye => return Ok(0),
                Ok(None) => link.lost_reading(Cause::Closed),
                Err(e) => link.lost_reading(link.cause_of(e)),
            }
        }
    }
}

/// The next frame header, or `None` when the connection ends before it.
fn read_header(input: &mut impl Read) -> io::Result<Option<u32>> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match input.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(u32::from_be_bytes(header)))
}

impl Write for PeerStream {
    /// Writes (part of) `buf` as one frame; to a lost peer, nothing, but timely is told it was
    /// written (an error would panic its thread).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_FRAME);
        if n > 0 {
            self.link.send(&Frame::Data(n), &buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for PeerStream {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(PeerStream {
            link: Arc::clone(&self.link),
            reader: None,
        })
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.link.socket.set_nonblocking(nonblocking)
    }

    /// Timely closes its side after its last message: a goodbye goes first, unless this process
    /// is leaving because a peer was lost (then the others must see it go as a loss).
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let link = &self.link;
        let mut closed = link.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if !*closed
            && !link.dead.load(Ordering::Acquire)
            && !link.watch.is_leaving()
            && let Err(error) = write_frame(&link.socket, GOODBYE, &[])
        {
            *closed = true;
            drop(closed);
            link.watch.lose(link.peer, link.cause_of(error));
            return Ok(());
        }
        *closed = true;
        let _ = link.socket.shutdown(how);
        Ok(())
    }
}
