//! WAV file backends: a source that plays a file (any rate and channel count, converted to
//! 48 kHz mono; optionally paced in real time) and a sink that writes 48 kHz mono 16-bit WAV.

use std::collections::VecDeque;
use std::time::Instant;

use super::convert::{downmix, RateConverter};
use super::{AudioError, AudioSink, AudioSource, RATE};

fn file_err(path: &str, e: impl std::fmt::Display) -> AudioError {
    AudioError::File {
        path: path.into(),
        detail: e.to_string(),
    }
}

/// Plays a WAV file as a capture source.
#[derive(Debug)]
pub struct WavSource {
    path: String,
    samples: VecDeque<f32>,
    paced_from: Option<Instant>,
    delivered: u64,
}

impl WavSource {
    /// Loads `path` and converts it to 48 kHz mono. With `paced`, reads deliver samples no
    /// faster than real time (from the first read on), like a sound card would.
    pub fn open(path: &str, paced: bool) -> Result<Self, AudioError> {
        let mut r = hound::WavReader::open(path).map_err(|e| file_err(path, e))?;
        let spec = r.spec();
        let raw: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => r
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(path, e))?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                r.samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| file_err(path, e))?
            }
        };
        let mut mono = Vec::with_capacity(raw.len() / spec.channels.max(1) as usize);
        downmix(&raw, spec.channels.max(1) as usize, &mut mono);
        let mut conv = RateConverter::new(spec.sample_rate, RATE)?;
        let mut out = Vec::with_capacity(
            mono.len() * RATE as usize / spec.sample_rate.max(1) as usize + 1024,
        );
        conv.process(&mono, &mut out)?;
        // Flush the converter's tail with silence and drop its leading delay.
        conv.process(&vec![0.0; spec.sample_rate as usize / 10], &mut out)?;
        let delay = conv.delay().min(out.len());
        out.drain(..delay);
        Ok(WavSource {
            path: path.into(),
            samples: out.into(),
            paced_from: if paced {
                None
            } else {
                Some(Instant::now() - std::time::Duration::from_secs(1_000_000))
            },
            delivered: 0,
        })
    }

    /// Samples (48 kHz) not read yet.
    pub fn remaining(&self) -> usize {
        self.samples.len()
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let start = *self.paced_from.get_or_insert_with(Instant::now);
        let due = (start.elapsed().as_secs_f64() * f64::from(RATE)) as u64;
        let allowed = due.saturating_sub(self.delivered) as usize;
        let n = out.len().min(allowed).min(self.samples.len());
        for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
            *o = s;
        }
        self.delivered += n as u64;
        Ok(n)
    }
    fn describe(&self) -> String {
        format!("WAV file {}", self.path)
    }
}

/// Writes played audio to a 48 kHz mono 16-bit WAV file (finished on drop).
pub struct WavSink {
    path: String,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
}

impl WavSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &str) -> Result<Self, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| file_err(path, e))?;
        Ok(WavSink {
            path: path.into(),
            writer: Some(writer),
        })
    }

    /// Finishes the file (also done on drop).
    pub fn finish(mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| file_err(&self.path, e)),
            None => Ok(()),
        }
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        for &s in samples {
            let v = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
            w.write_sample(v).map_err(|e| file_err(&self.path, e))?;
        }
        Ok(())
    }
    fn queued(&self) -> usize {
        0
    }
    fn describe(&self) -> String {
        format!("WAV file {}", self.path)
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::warn!(path = %self.path, error = %e, "could not finish WAV file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_with_rate_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("in.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&src_path, spec).unwrap();
        for i in 0..16_000 {
            let v = (0.5
                * (2.0 * std::f32::consts::PI * 500.0 * i as f32 / 16_000.0).sin()
                * 32767.0) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let mut src = WavSource::open(src_path.to_str().unwrap(), false).unwrap();
        let total = src.remaining();
        assert!((47_000..=53_000).contains(&total), "{total}");
        let out_path = dir.path().join("out.wav");
        let mut sink = WavSink::create(out_path.to_str().unwrap()).unwrap();
        let mut buf = vec![0.0; 4800];
        loop {
            let n = src.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            sink.write(&buf[..n]).unwrap();
        }
        sink.finish().unwrap();
        let r = hound::WavReader::open(&out_path).unwrap();
        assert_eq!(r.spec().sample_rate, 48_000);
        assert_eq!(r.len() as usize, total);
    }
}
