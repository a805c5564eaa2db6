//! One worker task: owns many streams and ticks them all every 20 ms.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::{self, error::SendError, UnboundedReceiver, UnboundedSender};
use tokio::time::MissedTickBehavior;

use super::stream::{Scratch, StreamState};
use super::TICK;

/// What a [`super::Stream`] handle asks of its worker.
#[derive(Debug)]
pub(crate) enum Command {
    Add(Box<StreamState>),
    Remove(u64),
    Stream(u64, StreamCommand),
}

#[derive(Debug)]
pub(crate) enum StreamCommand {
    SetRemote {
        remote_rtp: std::net::SocketAddr,
        remote_rtcp: std::net::SocketAddr,
        codec: media::Codec,
        payload_type: u8,
        telephone_event_pt: Option<u8>,
    },
    Play {
        id: u64,
        samples: Arc<[i16]>,
        loops: u32,
    },
    StopPlayback,
    StartRecording {
        id: u64,
        path: std::path::PathBuf,
        max_length: Duration,
        silence_timeout: Option<Duration>,
    },
    StopRecording {
        id: u64,
    },
    SetHold(bool),
}

/// The engine's side of a worker: its command queue and how many streams it
/// holds (for least-loaded placement).
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    commands: UnboundedSender<Command>,
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

    pub(crate) fn sender(&self) -> UnboundedSender<Command> {
        self.commands.clone()
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), SendError<Command>> {
        self.commands.send(command)
    }
}

pub(crate) fn spawn(runtime: &tokio::runtime::Handle) -> WorkerHandle {
    let (commands, rx) = mpsc::unbounded_channel();
    let load = Arc::new(AtomicUsize::new(0));
    runtime.spawn(run(rx));
    WorkerHandle { commands, load }
}

/// Runs until every handle on the worker (engine and streams) is gone.
async fn run(mut commands: UnboundedReceiver<Command>) {
    let mut worker = Worker {
        streams: Vec::new(),
        scratch: Scratch::new(),
    };
    let mut interval = tokio::time::interval(TICK);
    // Burst: a late tick is followed by the missed ones at once, so over time
    // there are exactly 50 ticks a second and RTP timestamps follow wall time.
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => worker.handle_command(command, Instant::now()),
                None => break,
            },
            _ = interval.tick() => worker.tick(Instant::now(), SystemTime::now()),
        }
    }
}

struct Worker {
    // A Vec, not a map: the tick walks every stream 50 times a second, removal
    // is rare and a linear search over one worker's streams is cheap.
    streams: Vec<StreamState>,
    scratch: Scratch,
}

impl Worker {
    fn handle_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Add(state) => self.streams.push(*state),
            Command::Remove(id) => {
                if let Some(index) = self.position(id) {
                    // Dropping the state ends a recording, closes both sockets,
                    // then returns the ports.
                    drop(self.streams.swap_remove(index));
                }
            }
            Command::Stream(id, command) => {
                if let Some(index) = self.position(id) {
                    self.streams[index].handle_command(command, now);
                }
            }
        }
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.streams.iter().position(|s| s.id() == id)
    }

    fn tick(&mut self, now: Instant, wall: SystemTime) {
        for stream in &mut self.streams {
            stream.tick(now, wall, &mut self.scratch);
        }
    }
}
