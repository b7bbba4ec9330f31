//! Sharded runs: `stagegate run … --shard K/N` drives the K-th of N disjoint,
//! deterministic slices of a run, so N machines (a CI matrix, a Kubernetes Indexed
//! Job) share one gate and `stagegate report merge` gives the verdict of the whole.
//!
//! What makes the slices add up to the unsharded run:
//! - The slice is taken from the *source* candidates (the sandbox, in its order:
//!   position `i` belongs to shard `i mod N`, so shards differ in size by at most one),
//!   before any scenario makes its copies. A candidate's copies, events and ids are
//!   derived from the seed and the candidate alone, so a shard plans exactly the
//!   events the unsharded run plans for its candidates.
//! - The kill-switch scenarios shape their traffic from the first few seeded
//!   candidates and judge the run as a whole (did the switch trip, reset, replay), so
//!   each of them runs whole, from those candidates, in one shard: the `j`-th of
//!   [`Scenario::KILL_SWITCH`] belongs to shard `j mod N`.
//!
//! A run's waves (`--wave-size`, [`Part`]) slice a run or a shard the same way, one
//! after another in one process. Everything else (starting the mocks and the
//! integration, driving, judging) is the same as for any run: a shard or a wave is a
//! run of fewer things.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::plan::Scenario;
use super::scenarios::{self, Generator, OutageSettings, PrepareError, Prepared};

/// One slice of a sharded run: the `index`-th (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Shard {
    /// Which slice, from 1 to `count`.
    pub index: u32,
    /// How many slices the run is split into.
    pub count: u32,
}

/// Why a `--shard` value is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `K/N`.
    #[error("expected K/N (for example `2/4`: the second of four shards), got `{0}`")]
    Shape(String),
    /// K or N is not a positive whole number.
    #[error("`{0}` in the shard is not a positive whole number")]
    Number(String),
    /// K is 0 or above N.
    #[error(
        "shard {index}/{count} does not exist: K counts from 1 to N (a Kubernetes JOB_COMPLETION_INDEX counts from 0: add 1)"
    )]
    OutOfRange {
        /// K.
        index: u32,
        /// N.
        count: u32,
    },
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (index, count) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| ShardError::Shape(text.to_owned()))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| ShardError::Number(part.trim().to_owned()))
        };
        let (index, count) = (number(index)?, number(count)?);
        if count == 0 || index == 0 || index > count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The shard's position from 0, as the slices are computed.
    fn slot(self) -> usize {
        (self.index - 1) as usize
    }

    /// Whether the source candidate at `position` (in sandbox order) is in this shard.
    pub fn owns_candidate(self, position: usize) -> bool {
        position % self.count as usize == self.slot()
    }

    /// Whether this shard runs `scenario`: every per-candidate scenario runs in every
    /// shard (on its slice); each kill-switch scenario runs whole in one.
    pub fn owns_scenario(self, scenario: Scenario) -> bool {
        match Scenario::KILL_SWITCH.iter().position(|s| *s == scenario) {
            Some(j) => j % self.count as usize == self.slot(),
            None => true,
        }
    }
}

/// One wave of a run in waves (`run --wave-size`): the `index`-th (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    /// Which wave, from 1 to `count`.
    pub index: u32,
    /// How many waves the run (or its shard) is driven in.
    pub count: u32,
}

/// The most waves a run is cut into, whatever `--wave-size` asks: each starts an
/// integration and keeps a report until the merge.
pub const MAX_WAVES: u32 = 1_000;

/// What one process drives of a run: all of it, a shard, a wave of it or of a shard.
///
/// A wave `w` of `W` takes the shard's candidates at the shard's own positions
/// `w - 1`, `w - 1 + W`…: the candidates of shard `K + N(w - 1)` of `N·W`
/// ([`Part::label`]). Its kill-switch scenarios all run in its last wave, back to back
/// after that wave's own candidates, as they run in the whole after every candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Part {
    /// The shard (`--shard K/N`), if any.
    pub shard: Option<Shard>,
    /// The wave of the run or of the shard, if it runs in waves.
    pub wave: Option<Wave>,
}

impl Part {
    /// The whole run.
    pub fn whole(self) -> bool {
        self.shard.is_none() && self.wave.is_none()
    }

    /// Whether the source candidate at `position` (in sandbox order) is in this part.
    pub fn owns_candidate(self, position: usize) -> bool {
        let shards = self.shard.map_or(1, |s| s.count as usize);
        // A wave of 0 (which no run makes) owns nothing rather than dividing by zero.
        self.shard.is_none_or(|s| s.owns_candidate(position))
            && self.wave.is_none_or(|w| {
                w.index >= 1
                    && w.count >= 1
                    && (position / shards) % w.count as usize == (w.index - 1) as usize
            })
    }

    /// Whether this part runs `scenario`: a per-candidate one on its slice; a
    /// kill-switch one whole, if its shard owns it and this is the shard's last wave.
    pub fn owns_scenario(self, scenario: Scenario) -> bool {
        self.shard.is_none_or(|s| s.owns_scenario(scenario))
            && (!scenario.is_kill_switch() || self.wave.is_none_or(|w| w.index == w.count))
    }

    /// Whether this part of `scenarios` needs the sandbox candidate at `position`
    /// loaded: one of its slice, one of the few a kill-switch scenario it runs shapes
    /// its traffic from, or any, for a policy scenario it runs.
    pub fn needs_candidate(self, scenarios: &[Scenario], position: usize) -> bool {
        let runs = |wanted: fn(Scenario) -> bool| {
            scenarios
                .iter()
                .any(|s| wanted(*s) && self.owns_scenario(*s))
        };
        self.owns_candidate(position)
            || (position < scenarios::KILL_SWITCH_CANDIDATES && runs(Scenario::is_kill_switch))
            || runs(Scenario::is_policy)
    }

    /// The shard a report of this part names: its shard, or for a wave `w` of `W` of
    /// shard `K/N` (`1/1` without one) shard `K + N(w - 1)` of `N·W`, whose candidates
    /// it holds; `None` for the whole run, or numbers that do not fit.
    pub fn label(self) -> Option<Shard> {
        let Some(wave) = self.wave else {
            return self.shard;
        };
        let of = self.shard.unwrap_or(Shard { index: 1, count: 1 });
        Some(Shard {
            index: of
                .index
                .checked_add(of.count.checked_mul(wave.index.checked_sub(1)?)?)?,
            count: of.count.checked_mul(wave.count)?,
        })
    }
}

/// How many waves a run (or its shard `of`) of `sources` source candidates takes at
/// `wave_size` source candidates a wave (0: one wave, whatever the size), at most
/// [`MAX_WAVES`].
pub fn waves(sources: u64, of: Option<Shard>, wave_size: u64) -> u32 {
    if wave_size == 0 {
        return 1;
    }
    let shards = u64::from(of.map_or(1, |s| s.count));
    let waves = sources
        .div_ceil(shards)
        .div_ceil(wave_size)
        .clamp(1, u64::from(MAX_WAVES)) as u32;
    // Every wave's label must fit.
    let last = Part {
        shard: of,
        wave: Some(Wave {
            index: waves,
            count: waves,
        }),
    };
    if last.label().is_some() { waves } else { 1 }
}

/// The plan of a run, or of one part of it: per-candidate scenarios over the part's
/// slice of the sandbox, kill-switch scenarios whole in the part that runs them.
/// Scenarios keep their run order; for the whole run this is [`scenarios::prepare`]
/// over the whole sandbox.
pub fn prepare<'g>(
    part: Part,
    generator: &'g Generator<'g>,
    chosen: &[Scenario],
    ack_sla_ms: u64,
    outage: &OutageSettings,
) -> Result<Prepared<'g>, PrepareError> {
    if part.whole() {
        return scenarios::prepare(generator, &|_| true, chosen, ack_sla_ms, outage);
    }
    let in_slice = |position: usize| part.owns_candidate(position);
    let owned: Vec<Scenario> = chosen
        .iter()
        .copied()
        .filter(|s| part.owns_scenario(*s))
        .collect();
    // Consecutive scenarios over the same candidates are planned together; the parts
    // are joined in run order. Planning is per candidate, so the parts are exactly
    // what one call would have planned for the same members.
    let mut prepared: Option<Prepared<'g>> = None;
    for group in owned.chunk_by(|a, b| a.is_kill_switch() == b.is_kill_switch()) {
        let members: &dyn Fn(usize) -> bool = if group[0].is_kill_switch() {
            &|_| true
        } else {
            &in_slice
        };
        let next = scenarios::prepare(generator, members, group, ack_sla_ms, outage)?;
        match &mut prepared {
            None => prepared = Some(next),
            Some(joined) => joined.append(next),
        }
    }
    match prepared {
        Some(prepared) => Ok(prepared),
        // Nothing of the chosen scenarios falls in this shard: an empty plan.
        None => scenarios::prepare(generator, &in_slice, &[], ack_sla_ms, outage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_explain_mistakes() {
        // (input, expected, why)
        let rows: [(&str, Result<Shard, ShardError>, &str); 6] = [
            ("2/4", Ok(Shard { index: 2, count: 4 }), "the plain form"),
            (
                " 1 / 1 ",
                Ok(Shard { index: 1, count: 1 }),
                "spaces are fine",
            ),
            ("2", Err(ShardError::Shape("2".into())), "no slash"),
            ("a/4", Err(ShardError::Number("a".into())), "not a number"),
            (
                "0/4",
                Err(ShardError::OutOfRange { index: 0, count: 4 }),
                "K counts from 1",
            ),
            (
                "5/4",
                Err(ShardError::OutOfRange { index: 5, count: 4 }),
                "K above N",
            ),
        ];
        for (input, expected, why) in rows {
            assert_eq!(input.parse::<Shard>(), expected, "{why}");
        }
        assert_eq!(Shard { index: 3, count: 8 }.to_string(), "3/8");
    }

    #[test]
    fn every_candidate_and_scenario_has_exactly_one_owner() {
        for count in 1..=9u32 {
            let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            for position in 0..50 {
                let owners = shards.iter().filter(|s| s.owns_candidate(position)).count();
                assert_eq!(owners, 1, "candidate {position} of {count} shards");
            }
            for scenario in Scenario::ALL {
                let owners = shards.iter().filter(|s| s.owns_scenario(scenario)).count();
                let expected = if scenario.is_kill_switch() {
                    1
                } else {
                    count as usize
                };
                assert_eq!(owners, expected, "{scenario} over {count} shards");
            }
        }
        // Four shards: one kill-switch scenario each.
        let four: Vec<Vec<Scenario>> = (1..=4)
            .map(|index| {
                let shard = Shard { index, count: 4 };
                Scenario::KILL_SWITCH
                    .into_iter()
                    .filter(|s| shard.owns_scenario(*s))
                    .collect()
            })
            .collect();
        assert!(four.iter().all(|owned| owned.len() == 1), "{four:?}");
    }

    #[test]
    fn the_waves_of_a_shard_own_exactly_its_candidates_and_kill_switch_scenarios() {
        for count in 1..=4u32 {
            let outers: Vec<Option<Shard>> = if count == 1 {
                vec![None]
            } else {
                (1..=count)
                    .map(|index| Some(Shard { index, count }))
                    .collect()
            };
            for waves in 1..=4u32 {
                let parts: Vec<Part> = outers
                    .iter()
                    .flat_map(|shard| {
                        (1..=waves).map(move |index| Part {
                            shard: *shard,
                            wave: Some(Wave {
                                index,
                                count: waves,
                            }),
                        })
                    })
                    .collect();
                for position in 0..60 {
                    let owners: Vec<&Part> = parts
                        .iter()
                        .filter(|part| part.owns_candidate(position))
                        .collect();
                    assert_eq!(
                        owners.len(),
                        1,
                        "candidate {position}, {count} shards of {waves} waves"
                    );
                    let owner = owners[0];
                    assert!(
                        owner.shard.is_none_or(|s| s.owns_candidate(position)),
                        "in its own shard"
                    );
                    let label = owner.label().expect("fits");
                    assert!(label.owns_candidate(position), "its label's candidate");
                }
                for scenario in Scenario::ALL {
                    let owners: Vec<&Part> = parts
                        .iter()
                        .filter(|part| part.owns_scenario(scenario))
                        .collect();
                    for part in &owners {
                        assert!(part.shard.is_none_or(|s| s.owns_scenario(scenario)));
                    }
                    if scenario.is_kill_switch() {
                        assert_eq!(owners.len(), 1, "{scenario}");
                        let wave = owners[0].wave.expect("a wave");
                        assert_eq!(wave.index, wave.count, "{scenario} in the last wave");
                    } else {
                        assert_eq!(owners.len(), parts.len(), "{scenario}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_run_takes_as_many_waves_as_its_part_needs() {
        let half = |index| Some(Shard { index, count: 2 });
        // (source candidates, shard, wave size, waves, why)
        let rows: [(u64, Option<Shard>, u64, u32, &str); 9] = [
            (10_000, None, 10_000, 1, "a full wave is one"),
            (10_001, None, 10_000, 2, "one more is two"),
            (100_000, None, 10_000, 10, "the benchmark's"),
            (100_000, None, 0, 1, "0: one wave"),
            (0, None, 10, 1, "nothing is still one run"),
            (14, half(2), 3, 3, "a shard's 7 in threes"),
            (20_000, half(1), 10_000, 1, "a shard's 10,000 is one"),
            (1_000_000, None, 1, MAX_WAVES, "no more than the most"),
            (
                u64::MAX,
                Some(Shard {
                    index: 1,
                    count: u32::MAX,
                }),
                1,
                1,
                "slices that do not fit",
            ),
        ];
        for (sources, shard, size, expected, why) in rows {
            assert_eq!(waves(sources, shard, size), expected, "{why}");
        }
        let part = |shard, index| Part {
            shard,
            wave: Some(Wave { index, count: 4 }),
        };
        assert_eq!(part(half(2), 3).label(), Some(Shard { index: 6, count: 8 }));
        assert_eq!(part(None, 0).label(), None, "waves count from 1");
        assert_eq!(Part::default().label(), None, "the whole run");
    }

    #[test]
    fn a_part_loads_its_slice_and_what_its_whole_sandbox_scenarios_shape_from() {
        let wave = |index| Part {
            shard: None,
            wave: Some(Wave { index, count: 4 }),
        };
        let loaded = |part: Part, scenarios: &[Scenario]| -> Vec<usize> {
            (0..12)
                .filter(|p| part.needs_candidate(scenarios, *p))
                .collect()
        };
        assert_eq!(loaded(wave(2), &[Scenario::Clean]), [1, 5, 9], "its slice");
        assert_eq!(
            loaded(wave(2), &[Scenario::Clean, Scenario::Brownout]),
            [1, 5, 9],
            "the kill-switch scenarios are the last wave's"
        );
        assert_eq!(
            loaded(wave(4), &[Scenario::Clean, Scenario::Brownout]),
            [0, 1, 2, 3, 7, 11],
            "and the first few seeded candidates"
        );
        assert_eq!(
            loaded(wave(1), &[Scenario::Policy]).len(),
            12,
            "a policy flow needs all"
        );
        // A shard's waves: its own positions, counted in the shard.
        let second = Part {
            shard: Some(Shard { index: 2, count: 2 }),
            wave: Some(Wave { index: 2, count: 3 }),
        };
        assert_eq!(loaded(second, &[Scenario::Clean]), [3, 9]);
    }
}
