//! A 5x3 video slot with 10 paylines. Each reel stops uniformly on its 32-symbol strip; a line
//! pays when its leftmost 3, 4 or 5 symbols match. The stake is spread evenly over the lines.
//! The RTP is computed exactly from the strips and paytable (`exact_rtp`) and confirmed by
//! simulation in the tests.

use serde::{Deserialize, Serialize};

use crate::{BetError, Detail, FairRng, Outcome};

pub const REELS: usize = 5;
pub const ROWS: usize = 3;
pub const LINES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Symbol {
    Cherry,
    Lemon,
    Orange,
    Plum,
    Bell,
    Seven,
}

const SYMBOLS: [Symbol; 6] = [
    Symbol::Cherry,
    Symbol::Lemon,
    Symbol::Orange,
    Symbol::Plum,
    Symbol::Bell,
    Symbol::Seven,
];

/// Copies of each symbol on every strip, in `SYMBOLS` order (32 in all).
const FREQUENCY: [u32; 6] = [9, 7, 6, 5, 3, 2];
const STRIP_LEN: usize = 32;

/// Line-bet multiples for 3, 4 and 5 of a kind, in `SYMBOLS` order.
const PAYTABLE: [[i64; 3]; 6] = [
    [8, 20, 60],
    [10, 40, 150],
    [15, 50, 200],
    [20, 80, 400],
    [50, 200, 1_000],
    [100, 500, 5_000],
];

/// Row index (0 = top) of each reel for each payline.
pub const PAYLINES: [[usize; REELS]; LINES] = [
    [1, 1, 1, 1, 1],
    [0, 0, 0, 0, 0],
    [2, 2, 2, 2, 2],
    [0, 1, 2, 1, 0],
    [2, 1, 0, 1, 2],
    [0, 0, 1, 2, 2],
    [2, 2, 1, 0, 0],
    [1, 0, 0, 0, 1],
    [1, 2, 2, 2, 1],
    [0, 1, 1, 1, 0],
];

/// The strip of reel `reel`: the same symbols on every reel, interleaved, shifted per reel.
fn strip(reel: usize) -> [Symbol; STRIP_LEN] {
    let mut base = Vec::with_capacity(STRIP_LEN);
    let mut left = FREQUENCY;
    while base.len() < STRIP_LEN {
        for (i, count) in left.iter_mut().enumerate() {
            if *count > 0 {
                base.push(SYMBOLS[i]);
                *count -= 1;
            }
        }
    }
    let mut out = [Symbol::Cherry; STRIP_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = base[(i + reel * 7) % STRIP_LEN];
    }
    out
}

fn symbol_index(s: Symbol) -> usize {
    SYMBOLS
        .iter()
        .position(|&x| x == s)
        .expect("every symbol is listed")
}

/// Line-bet multiple paid by the symbols on one line, left to right.
pub fn line_multiple(line: &[Symbol; REELS]) -> i64 {
    let first = line[0];
    let run = line.iter().take_while(|&&s| s == first).count();
    if run < 3 {
        0
    } else {
        PAYTABLE[symbol_index(first)][run - 3]
    }
}

pub fn check_stake(stake: i64) -> Result<(), BetError> {
    if stake % LINES as i64 != 0 {
        return Err(BetError::Invalid(format!(
            "slot stakes are spread over {LINES} lines and must be a multiple of {LINES}, got {stake}"
        )));
    }
    Ok(())
}

/// A paying line. Fields in alphabetical order: the stored and answered shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineWin {
    /// How many matching symbols from the left.
    pub count: usize,
    /// The payline, from 1.
    pub line: usize,
    pub pays: i64,
    pub symbol: Symbol,
}

/// Where the reels stopped, what shows and what paid: a slot round's outcome. Fields in
/// alphabetical order: the stored and answered shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSpin {
    /// The rows top to bottom, each reel left to right.
    pub grid: [[Symbol; REELS]; ROWS],
    pub stops: Vec<usize>,
    pub wins: Vec<LineWin>,
}

pub fn spin(stake: i64, rng: &mut FairRng) -> Outcome {
    let stops: Vec<usize> = (0..REELS)
        .map(|_| rng.below(STRIP_LEN as u32) as usize)
        .collect();
    let mut grid = [[Symbol::Cherry; REELS]; ROWS];
    for (reel, &stop) in stops.iter().enumerate() {
        let reel_strip = strip(reel);
        for (row, grid_row) in grid.iter_mut().enumerate() {
            grid_row[reel] = reel_strip[(stop + row) % STRIP_LEN];
        }
    }
    let line_bet = stake / LINES as i64;
    let mut wins = Vec::new();
    for (index, rows) in PAYLINES.iter().enumerate() {
        let line: [Symbol; REELS] = std::array::from_fn(|reel| grid[rows[reel]][reel]);
        let multiple = line_multiple(&line);
        if multiple > 0 {
            wins.push(LineWin {
                line: index + 1,
                symbol: line[0],
                count: line.iter().take_while(|&&s| s == line[0]).count(),
                pays: multiple * line_bet,
            });
        }
    }
    let payout = wins.iter().map(|w| w.pays).sum();
    Outcome {
        detail: Detail::Slot(SlotSpin { grid, stops, wins }),
        payout: Some(payout),
    }
}

/// The exact RTP as a fraction: every payline sees, on each reel, a symbol drawn with the
/// strip's frequencies, independently of the other reels, so one line's expected multiple is
/// the RTP. Enumerates all 6^5 symbol combinations with their weights.
pub fn exact_rtp_fraction() -> (u128, u128) {
    let mut returned: u128 = 0;
    let mut combo = [0usize; REELS];
    loop {
        let line: [Symbol; REELS] = std::array::from_fn(|reel| SYMBOLS[combo[reel]]);
        let weight: u128 = combo.iter().map(|&s| FREQUENCY[s] as u128).product();
        returned += weight * line_multiple(&line) as u128;
        let mut reel = 0;
        loop {
            if reel == REELS {
                return (returned, (STRIP_LEN as u128).pow(REELS as u32));
            }
            combo[reel] += 1;
            if combo[reel] < SYMBOLS.len() {
                break;
            }
            combo[reel] = 0;
            reel += 1;
        }
    }
}

/// The exact RTP as a number, enumerated once per process: the lobby shows it on every
/// visit, and the enumeration costs about 10 000 instructions each time.
pub fn exact_rtp() -> f64 {
    static RTP: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
        let (num, den) = exact_rtp_fraction();
        num as f64 / den as f64
    });
    *RTP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_have_the_declared_frequencies() {
        for reel in 0..REELS {
            let s = strip(reel);
            for (i, sym) in SYMBOLS.iter().enumerate() {
                assert_eq!(s.iter().filter(|&x| x == sym).count() as u32, FREQUENCY[i]);
            }
        }
    }

    #[test]
    fn exact_rtp_is_the_published_figure() {
        // Worked out by hand from the closed form sum p^3(1-p)a + p^4(1-p)b + p^5 c.
        assert_eq!(exact_rtp_fraction(), (32_348_682, 33_554_432));
        assert!((exact_rtp() - 0.964_065_849_8).abs() < 1e-9);
    }

    #[test]
    fn line_pays() {
        use Symbol::*;
        assert_eq!(line_multiple(&[Seven, Seven, Seven, Seven, Seven]), 5_000);
        assert_eq!(line_multiple(&[Bell, Bell, Bell, Cherry, Bell]), 50);
        assert_eq!(line_multiple(&[Cherry, Bell, Bell, Bell, Bell]), 0);
    }

    #[test]
    fn simulated_rtp_confirms_the_exact_one() {
        let mut rng = FairRng::new("slot-simulation", "client", 0);
        let spins = 1_000_000u32;
        let stake = 10;
        let (mut sum, mut sum_sq) = (0f64, 0f64);
        for _ in 0..spins {
            let r = spin(stake, &mut rng).payout.unwrap() as f64 / stake as f64;
            sum += r;
            sum_sq += r * r;
        }
        let n = spins as f64;
        let mean = sum / n;
        let standard_error = ((sum_sq / n - mean * mean) / n).sqrt();
        let exact = exact_rtp();
        assert!(
            (mean - exact).abs() < 4.0 * standard_error,
            "simulated {mean}, exact {exact}, standard error {standard_error}"
        );
    }

    #[test]
    fn rejects_stakes_not_spread_evenly() {
        assert!(check_stake(15).is_err());
        assert!(check_stake(20).is_ok());
    }
}
