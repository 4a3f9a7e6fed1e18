//! One talk spurt as an Ogg Opus stream (RFC 7845), written from the RTP payloads as they
//! arrive (no transcoding; issue 14).
//!
//! - Header packets: `OpusHead` (version 1, 1 output channel, pre-skip [`PRE_SKIP`] samples,
//!   input rate 48 kHz, mapping family 0) and `OpusTags` (vendor `radiogate`, the caller's
//!   comments), each on its own page as RFC 7845 §3 requires.
//! - Audio: each payload is one Ogg packet; the granule position counts 48 kHz samples
//!   (RFC 7845 §4), taken from each packet's TOC (RFC 6716 §3.1). Missing packets (an RTP
//!   timestamp gap) and pauses are filled with 20 ms Opus silence frames, so playback keeps
//!   real time. A packet from the past (reordered, duplicated) is dropped.
//! - Pages end at least every [`PAGE_SAMPLES`] (800 ms of audio) and are flushed: with the
//!   recorder's 100 ms batches and the one packet held back, a killed gateway loses at most
//!   the last second, and what is on disk plays.
//!
//! Pure over any [`Write`]: the recorder gives it a file.

use std::io::{self, Write};

/// Samples the decoder drops at the start (RFC 7845 §4.2; libopus's usual encoder delay).
pub const PRE_SKIP: u16 = 312;
/// A page ends once it holds this many samples (800 ms at 48 kHz).
pub const PAGE_SAMPLES: u64 = 38_400;
/// The longest gap filled with silence, samples (10 s); a longer one starts after the gap
/// without filling (a timestamp jump, not a pause).
pub const MAX_FILL: u32 = 480_000;
/// A 20 ms Opus frame of silence (CELT fullband, 20 ms, one frame: TOC 0xF8 and an
/// all-silence range-coder payload).
pub const SILENCE_20MS: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1), or `None` for an
/// empty or malformed packet (more than 120 ms, or a code-3 packet without its count byte).
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let total = frame * frames;
    (frames > 0 && total <= 5_760).then_some(total)
}

/// Why a packet was not written.
#[derive(Debug, thiserror::Error)]
pub enum OggOpusError {
    /// Writing failed (disk full, file closed).
    #[error("recording write: {0}")]
    Io(#[from] io::Error),
    /// The payload is not an Opus packet (see [`packet_samples`]).
    #[error("not an Opus packet ({0} bytes)")]
    NotOpus(usize),
    /// Reading: the stream is not Ogg Opus (bad page, no `OpusHead`/`OpusTags`).
    #[error("not an Ogg Opus stream: {0}")]
    NotOggOpus(String),
}

/// Reads a stream written by [`SpurtWriter`] (or any mono Ogg Opus stream) back: its audio
/// packets in order, each with its samples at 48 kHz (silence fill included, so playing
/// them one after the other keeps real time). At most `max` packets; packets that are not
/// Opus are skipped.
///
/// # Errors
/// [`OggOpusError::NotOggOpus`] when a page is corrupt or the headers are missing,
/// [`OggOpusError::Io`] when reading fails.
pub fn audio_packets<R: io::Read + io::Seek>(
    r: R,
    max: usize,
) -> Result<Vec<(Vec<u8>, u32)>, OggOpusError> {
    let mut reader = ogg::reading::PacketReader::new(r);
    let mut next = || -> Result<Option<ogg::Packet>, OggOpusError> {
        reader.read_packet().map_err(|e| match e {
            ogg::OggReadError::ReadError(e) => OggOpusError::Io(e),
            e => OggOpusError::NotOggOpus(e.to_string()),
        })
    };
    for magic in [&b"OpusHead"[..], b"OpusTags"] {
        match next()? {
            Some(p) if p.data.starts_with(magic) => {}
            _ => {
                return Err(OggOpusError::NotOggOpus(format!(
                    "no {} packet",
                    String::from_utf8_lossy(magic)
                )))
            }
        }
    }
    let mut out = Vec::new();
    while out.len() < max {
        let Some(p) = next()? else { break };
        if let Some(n) = packet_samples(&p.data) {
            out.push((p.data, n));
        }
    }
    Ok(out)
}

/// What [`SpurtWriter::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written, after this many 20 ms silence frames filling a gap.
    Written {
        /// Silence frames written before it.
        filled: u32,
    },
    /// Dropped: its timestamp is before the end of what is written (late or duplicate).
    Late,
}

/// Ogg's page checksum (RFC 3533 §6): CRC-32, generator 0x04C11DB7, initial value 0, no
/// reflection, no final XOR.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            k += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
};

fn crc(mut c: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        c = (c << 8) ^ CRC_TABLE[((c >> 24) ^ u32::from(*b)) as usize];
    }
    c
}

/// The largest packet written: one page's 255 lacing values (RFC 3533 §6) hold it whole, so
/// no packet continues on another page. Opus packets are at most 1,275 bytes per frame.
const MAX_PACKET: usize = 255 * 255 - 1;

/// One logical Ogg stream's pages (RFC 3533), packet by packet: the current page is built in
/// one buffer and written with one `write_all` when it ends. The `ogg` crate reads them
/// (tests, recovery, replay); writing is done here because its writer copies each packet
/// into its own allocation and rebuilds the page per call (about 3x the cost per packet,
/// docs/BENCHMARKS.md "Recording").
struct Pages<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    first: bool,
    /// Lacing values of the current page.
    lacing: Vec<u8>,
    /// Packet data of the current page.
    body: Vec<u8>,
    /// Granule position of the last packet completed on the current page.
    granule: Option<u64>,
    /// The assembled page (reused).
    page: Vec<u8>,
}

impl<W: Write> Pages<W> {
    fn new(out: W, serial: u32) -> Self {
        Self {
            out,
            serial,
            sequence: 0,
            first: true,
            lacing: Vec::with_capacity(255),
            body: Vec::with_capacity(16 * 1024),
            granule: None,
            page: Vec::with_capacity(16 * 1024 + 282),
        }
    }

    /// Adds a packet ending at `granule`; a full page (255 lacing values) is ended first.
    fn packet(&mut self, data: &[u8], granule: u64) -> io::Result<()> {
        debug_assert!(data.len() <= MAX_PACKET);
        let segments = data.len() / 255 + 1;
        if self.lacing.len() + segments > 255 {
            self.end_page(false)?;
        }
        self.lacing.extend(std::iter::repeat_n(255u8, segments - 1));
        self.lacing.push((data.len() % 255) as u8);
        self.body.extend_from_slice(data);
        self.granule = Some(granule);
        Ok(())
    }

    /// Writes the current page (flags: first page, `last` = end of stream) and flushes.
    fn end_page(&mut self, last: bool) -> io::Result<()> {
        let mut flags = 0u8;
        if self.first {
            flags |= 0x02;
        }
        if last {
            flags |= 0x04;
        }
        let granule = self.granule.unwrap_or(u64::MAX); // -1: no packet ends here
        self.page.clear();
        self.page.extend_from_slice(b"OggS");
        self.page.push(0); // version
        self.page.push(flags);
        self.page.extend_from_slice(&granule.to_le_bytes());
        self.page.extend_from_slice(&self.serial.to_le_bytes());
        self.page.extend_from_slice(&self.sequence.to_le_bytes());
        self.page.extend_from_slice(&[0; 4]); // checksum, set below
        self.page.push(self.lacing.len() as u8);
        self.page.extend_from_slice(&self.lacing);
        self.page.extend_from_slice(&self.body);
        let sum = crc(0, &self.page);
        self.page[22..26].copy_from_slice(&sum.to_le_bytes());
        self.out.write_all(&self.page)?;
        self.out.flush()?;
        self.first = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.lacing.clear();
        self.body.clear();
        self.granule = None;
        Ok(())
    }
}

/// Writes one spurt. Call [`SpurtWriter::finish`] at its end (the last page is marked
/// end-of-stream); a writer dropped without it leaves a file whose last page is the last
/// one flushed, which players accept. Each page is written with one `write_all` and
/// flushed, so the output needs no `BufWriter`.
pub struct SpurtWriter<W: Write> {
    pages: Pages<W>,
    /// Samples accounted for so far (the granule position of the last packet written).
    granule: u64,
    /// Granule at the start of the current page.
    page_start: u64,
    /// The RTP timestamp just after the last packet written.
    next_ts: Option<u32>,
    /// The last packet, held back until the next one (or `finish`) so that the stream's last
    /// page holds a packet and carries the end-of-stream flag: its bytes (buffer reused) and
    /// the granule after it.
    held: Vec<u8>,
    held_granule: Option<u64>,
}

impl<W: Write> SpurtWriter<W> {
    /// Starts a stream with serial number `serial` on `out`: writes and flushes the two
    /// header pages. `tags` become `KEY=value` comments in `OpusTags`.
    ///
    /// # Errors
    /// [`OggOpusError::Io`] when `out` cannot be written.
    pub fn new(out: W, serial: u32, tags: &[(&str, &str)]) -> Result<Self, OggOpusError> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // output channels
        head.extend_from_slice(&PRE_SKIP.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo, no table
        let vendor = b"radiogate";
        let mut comments = Vec::new();
        comments.extend_from_slice(b"OpusTags");
        comments.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        comments.extend_from_slice(vendor);
        let tags: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .filter(|c| c.len() <= 1024)
            .collect();
        comments.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for c in &tags {
            comments.extend_from_slice(&(c.len() as u32).to_le_bytes());
            comments.extend_from_slice(c.as_bytes());
        }
        let mut pages = Pages::new(out, serial);
        pages.packet(&head, 0)?;
        pages.end_page(false)?;
        pages.packet(&comments, 0)?;
        pages.end_page(false)?;
        Ok(Self {
            pages,
            granule: 0,
            page_start: 0,
            next_ts: None,
            held: Vec::with_capacity(1500),
            held_granule: None,
        })
    }

    /// Adds one RTP payload with RTP timestamp `rtp_ts` (48 kHz clock). A gap since the last
    /// packet up to [`MAX_FILL`] is filled with silence first.
    ///
    /// # Errors
    /// [`OggOpusError::NotOpus`] for a payload without a valid TOC, or longer than one page
    /// holds (nothing is written), [`OggOpusError::Io`] when the output fails.
    pub fn push(&mut self, rtp_ts: u32, payload: &[u8]) -> Result<Pushed, OggOpusError> {
        let samples = packet_samples(payload)
            .filter(|_| payload.len() <= MAX_PACKET)
            .ok_or(OggOpusError::NotOpus(payload.len()))?;
        let mut filled = 0;
        if let Some(next) = self.next_ts {
            let gap = rtp_ts.wrapping_sub(next);
            if gap > u32::MAX / 2 {
                return Ok(Pushed::Late);
            }
            if gap <= MAX_FILL {
                filled = gap / 960;
                for _ in 0..filled {
                    self.emit(&SILENCE_20MS, 960)?;
                }
            }
        }
        self.emit(payload, samples)?;
        self.next_ts = Some(rtp_ts.wrapping_add(samples));
        Ok(Pushed::Written { filled })
    }

    /// Samples written so far (48 kHz), pre-skip included: the duration is
    /// `samples() - PRE_SKIP` when positive.
    pub fn samples(&self) -> u64 {
        self.granule
    }

    fn emit(&mut self, packet: &[u8], samples: u32) -> Result<(), OggOpusError> {
        self.granule += u64::from(samples);
        if let Some(g) = self.held_granule {
            self.pages.packet(&self.held, g)?;
            if g - self.page_start >= PAGE_SAMPLES {
                self.page_start = g;
                self.pages.end_page(false)?;
            }
        }
        self.held.clear();
        self.held.extend_from_slice(packet);
        self.held_granule = Some(self.granule);
        Ok(())
    }

    /// Ends the stream: writes the last packet (a silence frame if none was pushed) on the
    /// last page, marked end-of-stream, flushes, and returns the output and the samples
    /// written.
    ///
    /// # Errors
    /// [`OggOpusError::Io`] when the output fails.
    pub fn finish(mut self) -> Result<(W, u64), OggOpusError> {
        if self.held_granule.is_none() {
            self.emit(&SILENCE_20MS, 960)?;
        }
        if let Some(g) = self.held_granule.take() {
            self.pages.packet(&self.held, g)?;
        }
        self.pages.end_page(true)?;
        Ok((self.pages.out, self.granule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ogg::reading::PacketReader;
    use std::io::Cursor;

    fn packets(bytes: &[u8]) -> Vec<ogg::Packet> {
        let mut r = PacketReader::new(Cursor::new(bytes.to_vec()));
        let mut v = Vec::new();
        while let Some(p) = r.read_packet().unwrap() {
            v.push(p);
        }
        v
    }

    /// 20 ms of speech-like audio: a 440 Hz tone, Opus-encoded with libopus.
    fn encoded(frames: usize) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        (0..frames)
            .map(|f| {
                let pcm: Vec<i16> = (0..960)
                    .map(|i| {
                        let t = (f * 960 + i) as f64 / 48_000.0;
                        ((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16
                    })
                    .collect();
                enc.encode_vec(&pcm, 1500).unwrap()
            })
            .collect()
    }

    #[test]
    fn toc_durations() {
        assert_eq!(packet_samples(&[0xF8, 0xFF, 0xFE]), Some(960)); // CELT FB 20 ms
        assert_eq!(packet_samples(&[0x08]), Some(960)); // SILK NB 20 ms
        assert_eq!(packet_samples(&[0x09]), Some(1_920)); // SILK NB 20 ms x 2
        assert_eq!(packet_samples(&[0x0B, 0x03]), Some(2_880)); // code 3, 3 frames of 20 ms
        assert_eq!(packet_samples(&[0x0B]), None); // code 3 without its count byte
        assert_eq!(packet_samples(&[0x1B, 0x03]), None); // 3 x 60 ms > 120 ms
        assert_eq!(packet_samples(&[]), None);
    }

    #[test]
    fn headers_then_audio_with_granules_gaps_filled_and_late_packets_dropped() {
        let frames = encoded(150);
        let mut w =
            SpurtWriter::new(Vec::new(), 7, &[("TALKER", "ana"), ("CHANNEL", "ops")]).unwrap();
        let mut ts = 1_000u32;
        for (i, f) in frames.iter().enumerate() {
            if i == 60 {
                ts = ts.wrapping_add(5 * 960); // 5 packets lost: 100 ms of silence
            }
            let p = w.push(ts, f).unwrap();
            assert_eq!(
                p,
                Pushed::Written {
                    filled: if i == 60 { 5 } else { 0 }
                }
            );
            ts = ts.wrapping_add(960);
        }
        assert_eq!(w.push(1_000, &frames[0]).unwrap(), Pushed::Late);
        assert!(matches!(w.push(ts, &[]), Err(OggOpusError::NotOpus(0))));
        let (bytes, samples) = w.finish().unwrap();
        assert_eq!(samples, (150 + 5) * 960);

        let p = packets(&bytes);
        assert_eq!(&p[0].data[..8], b"OpusHead");
        assert_eq!(p[0].data[9], 1, "mono output");
        assert_eq!(u16::from_le_bytes([p[0].data[10], p[0].data[11]]), PRE_SKIP);
        assert_eq!(&p[1].data[..8], b"OpusTags");
        let tags = String::from_utf8_lossy(&p[1].data);
        assert!(tags.contains("TALKER=ana") && tags.contains("CHANNEL=ops"));
        let audio = &p[2..];
        assert_eq!(audio.len(), 155);
        assert_eq!(audio.iter().filter(|a| a.data == SILENCE_20MS).count(), 5);
        assert!(audio.last().unwrap().last_in_stream());
        assert_eq!(audio.last().unwrap().absgp_page(), samples);
        // Pages end at least every 800 ms: 3.1 s of audio make at least 3 audio pages.
        let page_ends = audio.iter().filter(|a| a.last_in_page()).count();
        assert!(page_ends >= 3, "{page_ends} pages");
        let mut last = 0;
        for a in audio.iter().filter(|a| a.last_in_page()) {
            assert!(a.absgp_page() > last && a.absgp_page() - last <= PAGE_SAMPLES + 960);
            last = a.absgp_page();
        }

        // It decodes: every packet, and the tone is there (not silence) where audio was sent.
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 5_760];
        let mut energies = Vec::new();
        for a in audio {
            let n = dec.decode(&a.data, &mut pcm, false).unwrap();
            assert_eq!(n, 960);
            let e = pcm[..n].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n as f64;
            energies.push(e.sqrt());
        }
        assert!(energies[30] > 1_000.0, "tone decoded: rms {}", energies[30]);
        assert!(
            energies[62] < 100.0,
            "the gap plays as silence: rms {}",
            energies[62]
        );
    }

    #[test]
    fn audio_packets_read_back_what_was_written_in_real_time() {
        let frames = encoded(60);
        let mut w = SpurtWriter::new(Vec::new(), 3, &[]).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let gap = if i >= 30 { 2 * 960 } else { 0 };
            w.push(i as u32 * 960 + gap, f).unwrap();
        }
        let (bytes, samples) = w.finish().unwrap();
        let p = audio_packets(Cursor::new(&bytes), 10_000).unwrap();
        assert_eq!(p.len(), 62, "60 packets and 2 silence frames");
        assert_eq!(p.iter().map(|(_, n)| u64::from(*n)).sum::<u64>(), samples);
        assert_eq!(p[0].0, frames[0]);
        assert_eq!(p[30].0, SILENCE_20MS);
        assert_eq!(audio_packets(Cursor::new(&bytes), 10).unwrap().len(), 10);
        let mut bad = bytes.clone();
        bad[60] ^= 0xFF; // a page checksum no longer matches
        assert!(matches!(
            audio_packets(Cursor::new(&bad), 10_000),
            Err(OggOpusError::NotOggOpus(_))
        ));
        assert!(audio_packets(Cursor::new(b"not ogg at all".to_vec()), 10).is_err());
    }

    #[test]
    fn a_spurt_with_no_packet_is_a_valid_stream() {
        let (bytes, samples) = SpurtWriter::new(Vec::new(), 1, &[])
            .unwrap()
            .finish()
            .unwrap();
        let p = packets(&bytes);
        assert_eq!(p.len(), 3);
        assert!(p[2].last_in_stream());
        assert_eq!(samples, 960);
    }
}
