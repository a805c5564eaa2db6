//! One worker thread: owns many streams, relays bridged packets the moment
//! they arrive, and ticks every stream each 20 ms.
//!
//! A worker is an OS thread around one epoll instance rather than a tokio
//! task: every RTP and RTCP socket of its streams is registered
//! level-triggered, so one `epoll_wait` reports all sockets with data and each
//! is read once (one `recvfrom` per packet, no `EAGAIN` round trip); a packet
//! of a bridged stream is relayed inside that same wake-up, within
//! microseconds of arrival. The wait's timeout is the next 20 ms tick, so a
//! worker wakes 50 times a second plus once per burst of packets, whatever
//! the number of streams. Commands from [`super::Stream`] handles come over a
//! channel and an eventfd that is written only when the worker has not been
//! woken yet.
//!
//! Under load the worker stops sleeping in `epoll_wait` and polls instead:
//! once a tick period saw more than [`BUSY_EVENTS`] packets, it pauses
//! [`BUSY_PAUSE`] between non-blocking waits. Each pause collects a batch of
//! packets, and a packet that arrives finds no sleeping thread to wake, which
//! on a busy node saves a context switch (and on a VM an inter-processor
//! interrupt) per packet, the largest cost of a relay after the copies
//! themselves. A packet then waits at most the pause (0.2 ms) more; when
//! traffic falls below the threshold the worker sleeps in `epoll_wait` again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use super::control::StreamCommand;
use super::events::{Participation, TICK};
use super::room::{RoomCommand, RoomState};
use super::stream::{Scratch, StreamState};

/// What a [`super::Stream`] or [`super::Room`] handle asks of its worker.
#[derive(Debug)]
pub(crate) enum Command {
    Add(Box<StreamState>),
    Remove(u64),
    Stream(u64, StreamCommand),
    Bridge(u64, u64),
    Unbridge(u64),
    /// Stream `id` is on its way here from another worker: commands naming it wait until
    /// [`Command::Adopt`] brings it.
    Expect(u64),
    /// Hand stream `id` over to the worker behind `to` (which was told to expect it).
    Migrate {
        id: u64,
        to: Arc<Link>,
    },
    /// A stream handed over by another worker.
    Adopt(Box<StreamState>),
    /// The stream that was to be handed over is gone (dropped before it could move).
    NotComing(u64),
    AddRoom(Box<RoomState>),
    RemoveRoom(u64),
    Room(u64, RoomCommand),
    /// Stream `stream` joins room `room` (both on this worker), or changes how it takes part.
    Join {
        room: u64,
        stream: u64,
        part: Participation,
    },
    /// Stream `id` leaves its room.
    Leave(u64),
    /// Every handle on the worker is gone.
    Shutdown,
}

impl Command {
    /// The streams a command acts on, for holding it back while one is migrating here.
    fn streams(&self) -> [Option<u64>; 2] {
        match self {
            Command::Remove(id)
            | Command::Stream(id, _)
            | Command::Unbridge(id)
            | Command::Leave(id) => [Some(*id), None],
            Command::Bridge(a, b) => [Some(*a), Some(*b)],
            Command::Migrate { id, .. } => [Some(*id), None],
            Command::Join { stream, .. } => [Some(*stream), None],
            Command::Add(_)
            | Command::Expect(_)
            | Command::Adopt(_)
            | Command::NotComing(_)
            | Command::AddRoom(_)
            | Command::RemoveRoom(_)
            | Command::Room(..)
            | Command::Shutdown => [None, None],
        }
    }
}

/// The sending side of a worker's command queue, shared by the engine and
/// every stream handle of the worker. When the last one drops, the worker
/// stops (and drops whatever streams it still holds).
#[derive(Debug)]
pub(crate) struct Link {
    tx: mpsc::Sender<Command>,
    wake: Arc<Wake>,
}

impl Link {
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        self.tx.send(command).map_err(|e| e.0)?;
        self.wake.signal();
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The worker may already be gone; nothing to stop then.
        let _ = self.send(Command::Shutdown);
    }
}

/// An eventfd plus a flag, so a burst of commands costs one `write`.
#[derive(Debug)]
struct Wake {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Wake {
    fn new() -> io::Result<Wake> {
        // SAFETY: eventfd has no memory arguments; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Wake {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pending: AtomicBool::new(false),
        })
    }

    fn signal(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A
            // failure (counter overflow) cannot happen with values of 1 and
            // a reader that resets it; it would only delay the wake-up.
            unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Called by the worker before it drains the queue, so a command sent
    /// during the drain wakes it again.
    fn reset(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (already reset) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        self.pending.store(false, Ordering::Release);
    }
}

/// Level-triggered epoll instance.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: no memory arguments; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a live epoll_event for the duration of the call.
        let r =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove(&self, fd: RawFd) {
        // SAFETY: EPOLL_CTL_DEL ignores the event argument (non-null for old kernels).
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut event) };
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: the kernel writes at most `max` entries into `events`.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        // EINTR (or any error) reads as "nothing ready": the loop retries.
        usize::try_from(n).unwrap_or(0)
    }
}

/// Token of the wake-up eventfd; stream tokens are `slot << 1 | is_rtcp`.
const WAKE_TOKEN: u64 = u64::MAX;

/// Events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 512;

/// Packets per tick period (20 ms) above which the worker polls: 5,000 a
/// second, about 50 bridged calls.
const BUSY_EVENTS: usize = 100;

/// Pause between polls when busy.
const BUSY_PAUSE: Duration = Duration::from_micros(200);

/// The engine's side of a worker: its command link and how many streams it
/// holds (for least-loaded placement).
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    link: Arc<Link>,
    load: Arc<AtomicUsize>,
}

impl WorkerHandle {
    pub(crate) fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    /// The counter a stream holds while its worker owns it.
    pub(crate) fn load_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.load)
    }

    pub(crate) fn link(&self) -> Arc<Link> {
        Arc::clone(&self.link)
    }
}

pub(crate) fn spawn(index: usize) -> io::Result<WorkerHandle> {
    let (tx, rx) = mpsc::channel();
    let wake = Arc::new(Wake::new()?);
    let epoll = Epoll::new()?;
    epoll.add(wake.fd.as_raw_fd(), WAKE_TOKEN)?;
    let load = Arc::new(AtomicUsize::new(0));
    let worker = Worker {
        epoll,
        wake: Arc::clone(&wake),
        commands: rx,
        slots: Vec::new(),
        free: Vec::new(),
        ids: HashMap::new(),
        scratch: Scratch::new(),
        load: Arc::clone(&load),
        expected: HashSet::new(),
        deferred: VecDeque::new(),
        rooms: HashMap::new(),
    };
    std::thread::Builder::new()
        .name(format!("media-{index}"))
        .spawn(move || worker.run())?;
    Ok(WorkerHandle {
        link: Arc::new(Link { tx, wake }),
        load,
    })
}

struct Worker {
    epoll: Epoll,
    wake: Arc<Wake>,
    commands: mpsc::Receiver<Command>,
    /// Streams by slot; a slot's index is its epoll token, so readiness finds
    /// its stream without a lookup.
    slots: Vec<Option<StreamState>>,
    free: Vec<usize>,
    ids: HashMap<u64, usize>,
    scratch: Scratch,
    /// Streams this worker holds (for least-loaded placement).
    load: Arc<AtomicUsize>,
    /// Streams migrating here, and the commands naming them that wait for them, in order.
    expected: HashSet<u64>,
    deferred: VecDeque<Command>,
    rooms: HashMap<u64, RoomState>,
}

impl Worker {
    fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        let mut next_tick = Instant::now() + TICK;
        // Events seen since the last tick, and whether the last period was busy.
        let mut events_this_period = 0usize;
        let mut busy = false;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                busy = events_this_period > BUSY_EVENTS;
                events_this_period = 0;
                self.tick(now, SystemTime::now());
                // Burst: a late tick is followed by the missed ones at once, so
                // there are exactly 50 ticks a second and RTP timestamps follow
                // wall time; after a long stall (suspended process) start afresh.
                next_tick += TICK;
                if now > next_tick + Duration::from_secs(1) {
                    next_tick = now + TICK;
                }
                continue;
            }
            let wait = next_tick - now;
            let timeout_ms = if busy {
                std::thread::sleep(BUSY_PAUSE.min(wait));
                0
            } else {
                i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            };
            let ready = self.epoll.wait(&mut events, timeout_ms);
            events_this_period += ready;
            let mut commands = false;
            let now = Instant::now();
            for event in events.iter().take(ready) {
                let token = event.u64;
                if token == WAKE_TOKEN {
                    commands = true;
                } else {
                    self.handle_ready(token, now);
                }
            }
            // After the batch, so no event of this batch names a slot that a
            // command freed or reused.
            if commands && !self.drain_commands() {
                return;
            }
        }
    }

    /// False once the worker must stop.
    fn drain_commands(&mut self) -> bool {
        self.wake.reset();
        let now = Instant::now();
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Ok(command) => self.handle_command(command, now),
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn handle_ready(&mut self, token: u64, now: Instant) {
        let Ok(slot) = usize::try_from(token >> 1) else {
            return;
        };
        let Some(Some(stream)) = self.slots.get_mut(slot) else {
            return;
        };
        if token & 1 == 1 {
            stream.receive_rtcp(now, &mut self.scratch);
            return;
        }
        let Some(relay) = stream.receive_rtp(now, &mut self.scratch) else {
            return;
        };
        let Some(Some(peer)) = self.slots.get_mut(relay.peer_slot) else {
            return;
        };
        peer.relay_in(now, &relay, &mut self.scratch);
    }

    fn handle_command(&mut self, command: Command, now: Instant) {
        if !self.expected.is_empty() {
            // A command waits while it names a stream on its way here, or a stream that an
            // earlier waiting command names (so commands on one stream keep their order).
            let ids = command.streams();
            let held = |id: &u64| {
                self.expected.contains(id)
                    || self
                        .deferred
                        .iter()
                        .any(|d| d.streams().contains(&Some(*id)))
            };
            if ids.iter().flatten().any(held) {
                self.deferred.push_back(command);
                return;
            }
        }
        match command {
            Command::Add(state) => self.add(*state),
            Command::Remove(id) => {
                if let Some(state) = self.take(id) {
                    // Dropping the state ends its recordings and closes both sockets, then
                    // returns the ports.
                    drop(state);
                }
            }
            Command::Stream(id, command) => {
                if let Some(stream) = self.stream_mut(id) {
                    stream.handle_command(command, now);
                }
            }
            Command::Bridge(a, b) => self.bridge(a, b),
            Command::Unbridge(id) => {
                if let Some(&slot) = self.ids.get(&id) {
                    self.unbridge(slot);
                }
            }
            Command::Expect(id) => {
                self.expected.insert(id);
            }
            Command::Migrate { id, to } => {
                let handover = match self.take(id) {
                    // The stream moves its count to the new worker's load on arrival.
                    Some(state) => Command::Adopt(state),
                    None => Command::NotComing(id),
                };
                // The other worker gone: the stream is dropped, as that worker's own were.
                let _ = to.send(handover);
            }
            Command::NotComing(id) => {
                self.expected.remove(&id);
                self.replay_deferred(now);
            }
            Command::Adopt(mut state) => {
                let id = state.id();
                self.expected.remove(&id);
                state.set_load(Arc::clone(&self.load));
                self.add(*state);
                self.replay_deferred(now);
            }
            Command::AddRoom(room) => {
                self.rooms.insert(room.id(), *room);
            }
            Command::RemoveRoom(id) => {
                if let Some(room) = self.rooms.remove(&id) {
                    for slot in room.member_slots() {
                        if let Some(Some(stream)) = self.slots.get_mut(slot) {
                            stream.set_room(None);
                        }
                    }
                }
            }
            Command::Room(id, command) => {
                if let Some(room) = self.rooms.get_mut(&id) {
                    room.handle_command(command, now);
                }
            }
            Command::Join { room, stream, part } => self.join(room, stream, part),
            Command::Leave(id) => {
                if let Some(&slot) = self.ids.get(&id) {
                    self.leave_room(slot);
                }
            }
            // Handled by `drain_commands`.
            Command::Shutdown => {}
        }
    }

    /// Runs the commands that waited for a migrating stream, in their order; those still
    /// naming a stream on its way wait on.
    fn replay_deferred(&mut self, now: Instant) {
        let waiting = std::mem::take(&mut self.deferred);
        for command in waiting {
            self.handle_command(command, now);
        }
    }

    /// Takes stream `id` off this worker: out of epoll, its bridge and its room.
    fn take(&mut self, id: u64) -> Option<Box<StreamState>> {
        let slot = self.ids.remove(&id)?;
        self.unbridge(slot);
        self.leave_room(slot);
        let state = self.slots.get_mut(slot).and_then(Option::take)?;
        self.epoll.remove(state.rtp_fd());
        self.epoll.remove(state.rtcp_fd());
        self.free.push(slot);
        Some(Box::new(state))
    }

    fn join(&mut self, room_id: u64, id: u64, part: Participation) {
        let Some(&slot) = self.ids.get(&id) else {
            tracing::warn!(
                room = room_id,
                stream = id,
                "join of a stream this worker does not hold"
            );
            return;
        };
        let current = self
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .and_then(StreamState::room);
        if current != Some(room_id) {
            self.unbridge(slot);
            self.leave_room(slot);
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            tracing::warn!(
                room = room_id,
                stream = id,
                "join of a room this worker does not hold"
            );
            return;
        };
        room.join(id, slot, part);
        if let Some(Some(stream)) = self.slots.get_mut(slot) {
            stream.set_room(Some((room_id, part)));
        }
    }

    fn leave_room(&mut self, slot: usize) {
        let Some(Some(stream)) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(room_id) = stream.room() else {
            return;
        };
        stream.set_room(None);
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.leave(slot);
        }
    }

    fn add(&mut self, state: StreamState) {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let token = (slot as u64) << 1;
        let registered = self
            .epoll
            .add(state.rtp_fd(), token)
            .and_then(|()| self.epoll.add(state.rtcp_fd(), token | 1));
        if let Err(e) = registered {
            // Dropping the state frees its ports; the stream stays silent.
            tracing::error!(stream = state.id(), error = %e, "cannot watch RTP sockets");
            self.free.push(slot);
            return;
        }
        self.ids.insert(state.id(), slot);
        if slot == self.slots.len() {
            self.slots.push(Some(state));
        } else if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some(state);
        }
    }

    fn stream_mut(&mut self, id: u64) -> Option<&mut StreamState> {
        let slot = *self.ids.get(&id)?;
        self.slots.get_mut(slot)?.as_mut()
    }

    fn bridge(&mut self, a: u64, b: u64) {
        let (Some(&slot_a), Some(&slot_b)) = (self.ids.get(&a), self.ids.get(&b)) else {
            tracing::warn!(
                a,
                b,
                "bridge of a stream this worker does not hold; not bridged"
            );
            return;
        };
        if slot_a == slot_b {
            return;
        }
        self.unbridge(slot_a);
        self.unbridge(slot_b);
        self.leave_room(slot_a);
        self.leave_room(slot_b);
        if let Some(Some(s)) = self.slots.get_mut(slot_a) {
            s.set_bridge(Some(slot_b));
        }
        if let Some(Some(s)) = self.slots.get_mut(slot_b) {
            s.set_bridge(Some(slot_a));
        }
    }

    /// Ends the bridge of `slot`, on both sides.
    fn unbridge(&mut self, slot: usize) {
        let peer = match self.slots.get_mut(slot) {
            Some(Some(s)) => s.set_bridge(None),
            _ => None,
        };
        if let Some(Some(p)) = peer.and_then(|p| self.slots.get_mut(p)) {
            p.set_bridge(None);
        }
    }

    fn tick(&mut self, now: Instant, wall: SystemTime) {
        // Rooms first: a participant that hears its room is sent the mix (with its own
        // playback in it) here, and its own tick then sends nothing more.
        for room in self.rooms.values_mut() {
            room.tick(now, &mut self.slots, &mut self.scratch);
        }
        for stream in self.slots.iter_mut().flatten() {
            stream.tick(now, wall, &mut self.scratch);
        }
    }
}
