//! In-memory audio backends for tests and dry runs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{AudioError, AudioSink, AudioSource};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A source whose samples (48 kHz mono) are pushed through a [`SimSourceHandle`]. A clone
/// reads the same queue (a reopened device).
#[derive(Debug, Default, Clone)]
pub struct SimSource {
    queue: Arc<Mutex<VecDeque<f32>>>,
}

/// Feeds a [`SimSource`].
#[derive(Debug, Clone)]
pub struct SimSourceHandle {
    queue: Arc<Mutex<VecDeque<f32>>>,
}

impl SimSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }
    /// The handle that feeds it.
    pub fn handle(&self) -> SimSourceHandle {
        SimSourceHandle {
            queue: self.queue.clone(),
        }
    }
}

impl SimSourceHandle {
    /// Appends samples (48 kHz mono) to be read.
    pub fn push(&self, samples: &[f32]) {
        lock(&self.queue).extend(samples.iter().copied());
    }
}

impl AudioSource for SimSource {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let mut q = lock(&self.queue);
        let n = out.len().min(q.len());
        for (o, s) in out.iter_mut().zip(q.drain(..n)) {
            *o = s;
        }
        Ok(n)
    }
    fn describe(&self) -> String {
        "simulated capture".into()
    }
}

/// A sink that records everything written to it (48 kHz mono). A clone writes to the same
/// record (a reopened device).
#[derive(Debug, Default, Clone)]
pub struct SimSink {
    played: Arc<Mutex<Vec<f32>>>,
}

/// Reads what a [`SimSink`] recorded.
#[derive(Debug, Clone)]
pub struct SimSinkHandle {
    played: Arc<Mutex<Vec<f32>>>,
}

impl SimSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// The handle that reads the record.
    pub fn handle(&self) -> SimSinkHandle {
        SimSinkHandle {
            played: self.played.clone(),
        }
    }
}

impl SimSinkHandle {
    /// Everything written so far.
    pub fn samples(&self) -> Vec<f32> {
        lock(&self.played).clone()
    }
    /// How many samples were written so far.
    pub fn len(&self) -> usize {
        lock(&self.played).len()
    }
    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AudioSink for SimSink {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        lock(&self.played).extend_from_slice(samples);
        Ok(())
    }
    fn queued(&self) -> usize {
        0
    }
    fn describe(&self) -> String {
        "simulated playback".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_round_trip() {
        let src = SimSource::new();
        let h = src.handle();
        let mut src = src;
        h.push(&[0.1, 0.2, 0.3]);
        let mut buf = [0.0; 2];
        assert_eq!(src.read(&mut buf).unwrap(), 2);
        assert_eq!(buf, [0.1, 0.2]);
        let mut sink = SimSink::new();
        let sh = sink.handle();
        sink.write(&buf).unwrap();
        assert_eq!(sh.samples(), vec![0.1, 0.2]);
    }
}
