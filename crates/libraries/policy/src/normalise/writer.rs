//! Building the normalised text: unchanged stretches are copied lazily
//! (borrowed when nothing changes), rewritten clusters recorded as
//! segments for the way back, separator runs between CJK characters
//! dropped once the next character shows they are.

use std::borrow::Cow;

use super::cluster::{Emit, attaches};
use super::{LastCluster, Normalised, Options, Segment};
use crate::charclass::{is_cjk, is_separator};

/// A run of separators after a CJK character, not yet known to be followed
/// by another CJK character.
#[derive(Clone, Copy)]
struct SeparatorRun {
    orig_start: usize,
    norm_start: usize,
    segments: usize,
}

pub(super) struct Writer<'a> {
    src: &'a str,
    /// `None` while the output equals the input so far.
    out: Option<String>,
    /// Input consumed into `out`; `src[copied..]` up to the current cluster
    /// is unchanged text not yet copied.
    copied: usize,
    segments: Vec<Segment>,
    pub(super) options: Options,
    pub(super) prev_cjk: bool,
    run: Option<SeparatorRun>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(src: &'a str, prev_cjk: bool, options: Options) -> Writer<'a> {
        Writer {
            src,
            out: None,
            copied: 0,
            segments: Vec::new(),
            options,
            prev_cjk,
            run: None,
        }
    }

    /// Separators after a CJK character are waiting for what follows.
    pub(super) fn has_pending_run(&self) -> bool {
        self.run.is_some()
    }

    /// A run of plain characters: itself, ASCII lower-cased. (Runs are
    /// never inside a pending separator run.)
    pub(super) fn copy_plain(&mut self, start: usize, end: usize, upper: bool) {
        if !upper {
            return;
        }
        let out = self.flush(end);
        let from = out.len() - (end - start);
        out[from..].make_ascii_lowercase();
    }

    pub(super) fn cluster(&mut self, start: usize, end: usize, first: char, emit: Emit) {
        if let Emit::Drop = emit {
            let at = self.norm_offset(start);
            self.write(start, end, emit);
            debug_assert_eq!(at, self.norm_offset(end));
            return;
        }
        if self.options.skip_separators {
            let (head, last, all_separators) = match &emit {
                Emit::Same => {
                    let cluster = &self.src[start..end];
                    (first, last_char(cluster), cluster.chars().all(is_separator))
                }
                Emit::Char(c) | Emit::Narrow(c) => (*c, *c, is_separator(*c)),
                Emit::Text(s) => (
                    s.chars().next().unwrap_or(first),
                    last_char(s),
                    s.chars().all(is_separator),
                ),
                Emit::Drop => (first, first, false),
            };
            if all_separators {
                if self.prev_cjk && self.run.is_none() {
                    self.run = Some(SeparatorRun {
                        orig_start: start,
                        norm_start: self.norm_offset(start),
                        segments: self.segments.len(),
                    });
                }
                self.write(start, end, emit);
                if self.run.is_none() {
                    self.prev_cjk = false;
                }
                return;
            }
            if let Some(run) = self.run.take()
                && is_cjk(head)
            {
                self.drop_run(run, start);
            }
            self.prev_cjk = is_cjk(last);
        }
        self.write(start, end, emit);
    }

    #[inline]
    fn norm_offset(&self, orig: usize) -> usize {
        match &self.out {
            None => orig,
            Some(out) => out.len() + (orig - self.copied),
        }
    }

    /// Makes the output owned and complete up to `orig`.
    fn flush(&mut self, orig: usize) -> &mut String {
        let src = self.src;
        let copied = self.copied;
        self.copied = orig;
        if self.out.is_none() {
            let mut out = String::with_capacity(src.len() + 16);
            out.push_str(&src[..copied]);
            self.out = Some(out);
        }
        let out = self.out.get_or_insert_with(String::new);
        out.push_str(&src[copied..orig]);
        out
    }

    fn write(&mut self, start: usize, end: usize, emit: Emit) {
        match emit {
            Emit::Same => {}
            Emit::Char(c) => {
                self.flush(start).push(c);
                self.copied = end;
            }
            Emit::Narrow(c) => {
                let mut buf = [0u8; 4];
                self.replace(start, end, c.encode_utf8(&mut buf));
            }
            Emit::Text(text) => self.replace(start, end, &text),
            Emit::Drop => self.replace(start, end, ""),
        }
    }

    fn replace(&mut self, start: usize, end: usize, with: &str) {
        let out = self.flush(start);
        let norm_start = out.len();
        out.push_str(with);
        let norm_end = out.len();
        self.copied = end;
        self.segments.push(Segment {
            norm_start,
            norm_end,
            orig_start: start,
            orig_end: end,
        });
    }

    /// The separators between two CJK characters go: the run's output is
    /// taken back and recorded as one dropped stretch.
    fn drop_run(&mut self, run: SeparatorRun, until: usize) {
        let out = self.flush(until);
        out.truncate(run.norm_start);
        self.segments.truncate(run.segments);
        self.segments.push(Segment {
            norm_start: run.norm_start,
            norm_end: run.norm_start,
            orig_start: run.orig_start,
            orig_end: until,
        });
    }

    pub(super) fn finish(mut self) -> Normalised<'a> {
        let text = match self.out.take() {
            None => Cow::Borrowed(self.src),
            Some(mut out) => {
                out.push_str(&self.src[self.copied..]);
                Cow::Owned(out)
            }
        };
        let last_cluster = last_cluster(self.src, text.len(), &self.segments);
        Normalised {
            text,
            segments: self.segments,
            undecided_separators: self.run.map(|run| run.norm_start),
            last_cluster,
        }
    }
}

/// The last cluster of `src`: where it starts, in the input and in the
/// output (of length `norm_len`), and its first character.
fn last_cluster(src: &str, norm_len: usize, segments: &[Segment]) -> Option<LastCluster> {
    let mut chars = src.char_indices().rev();
    let (mut orig, mut first) = chars.next()?;
    while attaches(first) {
        match chars.next() {
            Some((at, c)) => (orig, first) = (at, c),
            None => break,
        }
    }
    let norm = match segments.last() {
        Some(seg) if seg.orig_end == src.len() && seg.orig_start <= orig => seg.norm_start,
        _ => norm_len - (src.len() - orig),
    };
    Some(LastCluster { orig, norm, first })
}

fn last_char(s: &str) -> char {
    s.chars().next_back().unwrap_or(' ')
}
