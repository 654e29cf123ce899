//! How much a connection's plays may try the connection's own thread first.
//!
//! A short `play` runs on the connection thread that received it
//! (`Executor::run_inline`); one that outgrows the inline budget there is
//! dropped and runs again on a script thread, so that try was thrown away.
//! A client could send such scripts on purpose to make a connection thread
//! throw budgets away, so the tries are credited: a connection starts with
//! [`MAX_CREDIT`], each hand-off spends one, and every [`PLAYS_PER_CREDIT`]
//! plays answered inline earn one back. Out of credit, a connection's plays
//! go straight to the script threads. A client can then waste at most
//! `MAX_CREDIT` budgets, plus one per `PLAYS_PER_CREDIT` plays that cost a
//! connection thread almost nothing.
//!
//! Credit, not a single chance: a hand-off is not always the script's
//! doing. The first run on a thread builds its sandbox and parses cold, and
//! now and then a run of `40 + 2` takes over 100 µs of the thread's time
//! (seen about once in 5,000 plays on a virtual machine: interrupts and
//! page faults are charged to whichever thread runs). With one chance per
//! connection, one such run sent every later play of a long-lived connection
//! the long way, two context switches each (bench/PROFILE.md §8).

/// Hand-offs a connection may have before it earns more.
pub(crate) const MAX_CREDIT: u8 = 3;

/// Plays answered inline that earn back one hand-off.
pub(crate) const PLAYS_PER_CREDIT: u8 = 100;

/// One connection's credit for inline tries.
#[derive(Debug)]
pub(crate) struct InlineCredit {
    left: u8,
    /// Plays answered inline towards the next credit.
    earned: u8,
}

impl Default for InlineCredit {
    fn default() -> Self {
        InlineCredit {
            left: MAX_CREDIT,
            earned: 0,
        }
    }
}

impl InlineCredit {
    /// Whether the next play may try the connection's thread first.
    pub fn may_try(&self) -> bool {
        self.left > 0
    }

    /// A play was answered inline.
    pub fn answered(&mut self) {
        self.earned += 1;
        if self.earned == PLAYS_PER_CREDIT {
            self.earned = 0;
            self.left = (self.left + 1).min(MAX_CREDIT);
        }
    }

    /// A play outgrew the inline budget and went to a script thread.
    pub fn handed_off(&mut self) {
        self.left = self.left.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_offs_spend_credit_and_plays_answered_inline_earn_it_back() {
        let mut credit = InlineCredit::default();
        for _ in 0..MAX_CREDIT {
            assert!(credit.may_try());
            credit.handed_off();
        }
        assert!(!credit.may_try());

        let mut credit = InlineCredit::default();
        for _ in 0..MAX_CREDIT - 1 {
            credit.handed_off();
        }
        for _ in 0..PLAYS_PER_CREDIT - 1 {
            credit.answered();
        }
        credit.handed_off();
        assert!(!credit.may_try(), "one play short of a credit");

        let mut credit = InlineCredit::default();
        for _ in 0..MAX_CREDIT - 1 {
            credit.handed_off();
        }
        for _ in 0..PLAYS_PER_CREDIT {
            credit.answered();
        }
        credit.handed_off();
        assert!(credit.may_try(), "the credit earned back");
    }

    #[test]
    fn credit_never_grows_past_its_cap() {
        let mut credit = InlineCredit::default();
        for _ in 0..u32::from(PLAYS_PER_CREDIT) * 5 {
            credit.answered();
        }
        for _ in 0..MAX_CREDIT {
            credit.handed_off();
        }
        assert!(!credit.may_try());
    }
}
