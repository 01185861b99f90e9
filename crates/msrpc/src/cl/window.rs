//! The sliding windows of a connectionless call ([MS-RPCE] 3.2.1.1.2,
//! 3.2.1.1.3 and 3.2.1.5.3): the receiver's fragment list, which
//! reassembles a request or response and says in a fack what it holds,
//! and the sender's, which paces fragments in bursts within the peer's
//! window and resends what a fack or a timeout shows lost. Client and
//! server use both, one per direction.

use std::collections::{BTreeMap, BTreeSet};

use super::Fack;

/// Fragments one side is collecting.
#[derive(Debug, Default)]
pub struct Reassembly {
    fragments: BTreeMap<u16, Vec<u8>>,
    /// Every fragment below this has arrived (the Receive Fragment Base).
    next: u16,
    last: Option<u16>,
    held: usize,
    /// The highest serial number received.
    pub serial: u16,
}

/// Why a fragment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The fragments together would pass the limit.
    TooLarge,
    /// A fragment after the one marked last, or a second, different last.
    BeyondLast,
}

/// How far beyond the base a fragment may be; farther ones are dropped
/// (the sender's window is 32 at most; this allows for resent bursts).
const MAX_AHEAD: u16 = 1024;

impl Reassembly {
    pub fn new() -> Reassembly {
        Reassembly::default()
    }

    /// Adds a fragment; Ok(false) for one already held (a duplicate).
    pub fn add(
        &mut self,
        fragnum: u16,
        last: bool,
        serial: u16,
        body: &[u8],
        limit: usize,
    ) -> Result<bool, Refused> {
        self.serial = self.serial.max(serial);
        if fragnum < self.next || self.fragments.contains_key(&fragnum) {
            return Ok(false);
        }
        if fragnum - self.next > MAX_AHEAD {
            return Err(Refused::TooLarge);
        }
        match self.last {
            Some(l) if fragnum > l || (last && fragnum != l) => return Err(Refused::BeyondLast),
            _ => {}
        }
        if last && self.fragments.keys().any(|k| *k > fragnum) {
            return Err(Refused::BeyondLast);
        }
        if self.held + body.len() > limit {
            return Err(Refused::TooLarge);
        }
        if last {
            self.last = Some(fragnum);
        }
        self.held += body.len();
        self.fragments.insert(fragnum, body.to_vec());
        while self.fragments.contains_key(&self.next) {
            if self.next == u16::MAX {
                break;
            }
            self.next += 1;
        }
        Ok(true)
    }

    /// Whether every fragment up to the last has arrived.
    pub fn is_complete(&self) -> bool {
        self.last.is_some_and(|l| self.next > l)
    }

    /// The fragments held, by number, to be verified (and unsealed) in
    /// place before they are taken.
    pub fn fragments_mut(&mut self) -> impl Iterator<Item = (u16, &mut Vec<u8>)> {
        self.fragments.iter_mut().map(|(n, f)| (*n, f))
    }

    /// The whole body, once complete.
    pub fn take(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.held);
        for (_, part) in std::mem::take(&mut self.fragments) {
            out.extend_from_slice(&part);
        }
        out
    }

    /// The fack that says what is held: the header's fragnum (the highest
    /// fragment received in order, 0xffff for none) and the body with the
    /// selective acknowledgement of the fragments beyond it.
    pub fn fack(&self, window_size: u16, max_tsdu: u32, max_frag_size: u32) -> (u16, Fack) {
        let fragnum = self.next.wrapping_sub(1);
        let mut selack: Vec<u32> = Vec::new();
        for n in self.fragments.keys().filter(|n| **n > self.next) {
            let bit = usize::from(*n - self.next);
            let word = bit / 32;
            if selack.len() <= word {
                selack.resize(word + 1, 0);
            }
            selack[word] |= 1 << (bit % 32);
        }
        (
            fragnum,
            Fack {
                version: 1,
                window_size,
                max_tsdu,
                max_frag_size,
                serial_num: self.serial,
                selack,
            },
        )
    }
}

/// A fragment to send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Send {
    pub fragnum: u16,
    /// PF_NOFACK: the receiver need not fack it.
    pub no_fack: bool,
    /// The last fragment of the call's data.
    pub last: bool,
}

impl Send {
    /// Marks a fragment's header: its number, and the frag, last_frag and
    /// nofack flags of a call sent in several fragments.
    pub fn mark(&self, header: &mut super::Header, fragmented: bool) {
        use super::flags1;
        if fragmented {
            header.flags1 |= flags1::FRAG;
            if self.last {
                header.flags1 |= flags1::LAST_FRAG;
            }
            if self.no_fack {
                header.flags1 |= flags1::NO_FACK;
            }
        }
        header.fragnum = self.fragnum;
    }
}

/// Fragments one side is sending.
#[derive(Debug)]
pub struct Transmission {
    fragments: Vec<Vec<u8>>,
    /// The lowest fragment not yet acknowledged (Fragment_base).
    base: usize,
    acked: BTreeSet<usize>,
    /// Fragments below this have been sent at least once.
    frontier: usize,
    /// Fragments a fack showed lost: sent again first.
    lost: BTreeSet<usize>,
    /// The receiver's window (Outbound Fragment Window).
    window: usize,
    burst: usize,
}

/// The largest window this runtime honours ([MS-RPCE] 3.2.2.1.4: 32).
pub const MAX_WINDOW: usize = 32;

impl Transmission {
    /// Cuts `data` into fragments of at most `fragment_len` octets (at
    /// least one fragment, empty for empty data); `window` is what the
    /// receiver is known to take (1 until it says).
    pub fn new(data: &[u8], fragment_len: usize, window: usize) -> Transmission {
        let fragment_len = fragment_len.max(8);
        let mut fragments: Vec<Vec<u8>> = data.chunks(fragment_len).map(<[u8]>::to_vec).collect();
        if fragments.is_empty() {
            fragments.push(Vec::new());
        }
        Transmission {
            fragments,
            base: 0,
            acked: BTreeSet::new(),
            frontier: 0,
            lost: BTreeSet::new(),
            window: window.clamp(1, MAX_WINDOW),
            burst: 1,
        }
    }

    pub fn count(&self) -> usize {
        self.fragments.len()
    }

    pub fn fragment(&self, fragnum: u16) -> &[u8] {
        &self.fragments[usize::from(fragnum)]
    }

    /// Whether the data goes in more than one fragment.
    pub fn is_fragmented(&self) -> bool {
        self.fragments.len() > 1
    }

    /// Whether every fragment has been acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        self.base >= self.fragments.len()
    }

    /// Whether every fragment has been sent at least once.
    pub fn all_sent(&self) -> bool {
        self.frontier >= self.fragments.len()
    }

    /// The next burst: fragments a fack showed lost, then new ones within
    /// the window, up to the burst length; all but the last with
    /// PF_NOFACK, the last without unless it ends the data. When nothing
    /// is left to send, the lowest unacknowledged fragment again, facks
    /// asked for (3.2.1.5.3).
    pub fn burst(&mut self) -> Vec<Send> {
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < self.burst {
            if let Some(n) = self.lost.pop_first() {
                picked.push(n);
                continue;
            }
            if self.frontier < self.fragments.len() && self.frontier < self.base + self.window {
                picked.push(self.frontier);
                self.frontier += 1;
                continue;
            }
            break;
        }
        if picked.len() < self.burst {
            self.burst = (self.burst / 2).max(1);
        }
        if picked.is_empty() {
            if self.all_acknowledged() {
                return Vec::new();
            }
            let lowest = (self.base..self.frontier)
                .find(|n| !self.acked.contains(n))
                .unwrap_or(self.base);
            return vec![self.send(lowest, false)];
        }
        let last_picked = picked.len() - 1;
        picked
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let final_fragment = *n + 1 == self.fragments.len();
                self.send(*n, i != last_picked || final_fragment)
            })
            .collect()
    }

    fn send(&self, n: usize, no_fack: bool) -> Send {
        Send {
            fragnum: n as u16,
            no_fack,
            last: n + 1 == self.fragments.len(),
        }
    }

    /// A fack or nocall-with-body: fragments up to `fragnum` and those
    /// in `selack` arrived; the receiver takes `window_size` more. The
    /// unacknowledged fragments below the highest acknowledged one were
    /// lost and are sent again. The burst grows by one.
    pub fn on_fack(&mut self, fragnum: u16, selack: &[u32], window_size: u16) {
        // 0xffff: nothing received in order yet.
        let in_order = if fragnum == u16::MAX {
            0
        } else {
            usize::from(fragnum) + 1
        };
        let mut highest = in_order;
        for n in self.base..in_order.min(self.fragments.len()) {
            self.acked.insert(n);
        }
        for (w, word) in selack.iter().enumerate() {
            for bit in 0..32 {
                if word & (1 << bit) != 0 {
                    let n = in_order + w * 32 + bit;
                    if n < self.fragments.len() {
                        self.acked.insert(n);
                        highest = highest.max(n + 1);
                    }
                }
            }
        }
        while self.acked.contains(&self.base) {
            self.acked.remove(&self.base);
            self.base += 1;
        }
        self.lost
            .retain(|n| *n >= self.base && !self.acked.contains(n));
        for n in self.base..highest.min(self.frontier) {
            if !self.acked.contains(&n) {
                self.lost.insert(n);
            }
        }
        self.window = usize::from(window_size).clamp(1, MAX_WINDOW);
        self.burst = (self.burst + 1).min(self.window);
    }

    /// Nothing came back in time: the burst halves and everything sent
    /// but not acknowledged goes again.
    pub fn on_timeout(&mut self) {
        self.burst = (self.burst / 2).max(1);
        for n in self.base..self.frontier {
            if !self.acked.contains(&n) {
                self.lost.insert(n);
            }
        }
    }

    /// The receiver said it holds everything (a working, or the answer).
    pub fn acknowledge_all(&mut self) {
        self.base = self.fragments.len();
        self.frontier = self.fragments.len();
        self.acked.clear();
        self.lost.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembly_takes_fragments_in_any_order_and_says_what_it_holds() {
        let mut r = Reassembly::new();
        assert_eq!(r.add(2, true, 3, b"cc", 100), Ok(true));
        assert_eq!(r.add(0, false, 1, b"aa", 100), Ok(true));
        assert!(!r.is_complete());
        let (fragnum, fack) = r.fack(16, 65528, 1464);
        assert_eq!(fragnum, 0);
        // Fragment 2 is one past the base (1): bit 1.
        assert_eq!(fack.selack, vec![0b10]);
        assert_eq!(fack.serial_num, 3);
        assert_eq!(r.add(0, false, 4, b"aa", 100), Ok(false));
        assert_eq!(r.add(1, false, 5, b"bb", 100), Ok(true));
        assert!(r.is_complete());
        assert_eq!(r.take(), b"aabbcc");
        let mut r = Reassembly::new();
        assert_eq!(r.fack(1, 0, 0).0, 0xffff);
        assert_eq!(r.add(0, false, 0, &[0; 60], 100), Ok(true));
        assert_eq!(r.add(1, false, 0, &[0; 60], 100), Err(Refused::TooLarge));
        assert_eq!(r.add(3, true, 0, b"", 100), Ok(true));
        assert_eq!(r.add(4, false, 0, b"", 100), Err(Refused::BeyondLast));
        assert_eq!(r.add(2, true, 0, b"", 100), Err(Refused::BeyondLast));
    }

    #[test]
    fn transmission_paces_bursts_and_resends_what_a_fack_shows_lost() {
        let data: Vec<u8> = (0..100).collect();
        let mut t = Transmission::new(&data, 10, 1);
        assert_eq!(t.count(), 10);
        // Window 1: one fragment, facks asked for.
        assert_eq!(
            t.burst(),
            vec![Send {
                fragnum: 0,
                no_fack: false,
                last: false
            }]
        );
        t.on_fack(0, &[], 4);
        // The burst grew to 2 within the new window of 4.
        let b = t.burst();
        assert_eq!(b.iter().map(|s| s.fragnum).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            b.iter().map(|s| s.no_fack).collect::<Vec<_>>(),
            vec![true, false]
        );
        // Fragment 2 arrived, 1 did not: 1 goes again first.
        t.on_fack(0, &[0b10], 4);
        let b = t.burst();
        assert_eq!(
            b.iter().map(|s| s.fragnum).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        t.on_fack(4, &[], 32);
        let mut sent = Vec::new();
        while !t.all_sent() {
            sent.extend(t.burst());
        }
        let last = sent.last().unwrap();
        assert_eq!((last.fragnum, last.last, last.no_fack), (9, true, true));
        assert!(!t.all_acknowledged());
        // Lost after sending: a timeout sends the unacknowledged again.
        t.on_timeout();
        assert_eq!(t.burst().first().map(|s| s.fragnum), Some(5));
        t.on_fack(9, &[], 32);
        assert!(t.all_acknowledged());
        assert!(t.burst().is_empty());
        // Nothing new to send: the lowest unacknowledged asks for a fack.
        let mut t = Transmission::new(&data, 50, 1);
        t.burst();
        assert_eq!(
            t.burst(),
            vec![Send {
                fragnum: 0,
                no_fack: false,
                last: false
            }]
        );
        assert_eq!(Transmission::new(&[], 10, 1).count(), 1);
    }
}
