//! A memory model fitted to exact allocator counts.
//!
//! Peak memory splits into persistent state (parameters and optimizer state, independent of
//! the batch) and a transient part (activations, gradients, temporaries). The transient part is
//! fitted as `a + b · batch` by least squares over two or more measured batches. Under data
//! parallelism, as the released recipe trains, every device holds the whole persistent state
//! and the transient memory of its own per-device batch, so the per-device peak at batch `n` is
//! `persistent + a + b · n`.
//!
//! The step's peak is the larger of two high points: the end of the forward pass, where the
//! saved activations (linear in the batch) are all alive, and the end of the backward pass,
//! where every weight gradient is (independent of the batch). At small batches the second one
//! can set the peak, and a line through two such peaks has almost no slope. So where the
//! forward pass's own peak was measured too, it gets a line of its own, and the model predicts
//! the larger of the two lines.

use serde::{Deserialize, Serialize};

/// One measurement: peak live bytes (over the process baseline) at a batch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MemoryPoint {
    pub batch: usize,
    pub peak_bytes: u64,
    pub persistent_bytes: u64,
    /// Peak during the forward pass alone, where measured (host allocator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_peak_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryModel {
    pub persistent_bytes: f64,
    /// Transient bytes at batch 0 (buffers that do not scale with the batch).
    pub intercept_bytes: f64,
    /// Transient bytes per sample.
    pub per_sample_bytes: f64,
    /// The forward pass's peak as its own line, when every point measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Line>,
    pub points: Vec<MemoryPoint>,
}

/// Transient bytes as `intercept + per_sample · batch`, over the persistent state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Line {
    pub intercept_bytes: f64,
    pub per_sample_bytes: f64,
}

impl Line {
    /// Least squares through (batch, bytes).
    fn fit(xs: &[f64], ys: &[f64]) -> Line {
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let slope = sxy / sxx;
        Line {
            intercept_bytes: my - slope * mx,
            per_sample_bytes: slope,
        }
    }

    fn at(&self, batch: usize) -> f64 {
        self.intercept_bytes + self.per_sample_bytes * batch as f64
    }

    /// Largest batch with `at(batch) <= room`; None when the line does not grow with the batch
    /// and starts under `room` (it bounds nothing).
    fn max_batch(&self, room: f64) -> Option<usize> {
        if self.intercept_bytes > room {
            Some(0)
        } else if self.per_sample_bytes <= 0.0 {
            None
        } else {
            Some(((room - self.intercept_bytes) / self.per_sample_bytes).floor() as usize)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MemoryModelError {
    #[error("the memory model needs measurements at two or more distinct batch sizes (got {0})")]
    TooFewBatches(usize),
    #[error("persistent bytes differ between measurements ({0} vs {1}): not the same model")]
    MixedModels(u64, u64),
}

impl MemoryModel {
    pub fn fit(points: &[MemoryPoint]) -> Result<MemoryModel, MemoryModelError> {
        let mut batches: Vec<usize> = points.iter().map(|p| p.batch).collect();
        batches.sort();
        batches.dedup();
        if batches.len() < 2 {
            return Err(MemoryModelError::TooFewBatches(batches.len()));
        }
        let persistent = points[0].persistent_bytes;
        if let Some(p) = points.iter().find(|p| p.persistent_bytes != persistent) {
            return Err(MemoryModelError::MixedModels(
                persistent,
                p.persistent_bytes,
            ));
        }
        let xs: Vec<f64> = points.iter().map(|p| p.batch as f64).collect();
        let transient = |peak: u64, p: &MemoryPoint| peak.saturating_sub(p.persistent_bytes) as f64;
        let ys: Vec<f64> = points.iter().map(|p| transient(p.peak_bytes, p)).collect();
        let whole = Line::fit(&xs, &ys);
        let forward = points
            .iter()
            .map(|p| p.forward_peak_bytes.map(|f| transient(f, p)))
            .collect::<Option<Vec<f64>>>()
            .map(|fs| Line::fit(&xs, &fs));
        Ok(MemoryModel {
            persistent_bytes: persistent as f64,
            intercept_bytes: whole.intercept_bytes,
            per_sample_bytes: whole.per_sample_bytes,
            forward,
            points: points.to_vec(),
        })
    }

    fn whole(&self) -> Line {
        Line {
            intercept_bytes: self.intercept_bytes,
            per_sample_bytes: self.per_sample_bytes,
        }
    }

    /// Transient bytes per sample: the forward pass's (the activations) where it was measured,
    /// else the whole step's.
    pub fn activation_bytes_per_sample(&self) -> f64 {
        self.forward
            .map(|f| f.per_sample_bytes)
            .unwrap_or(self.per_sample_bytes)
    }

    /// Predicted per-device peak at a per-device batch: the larger of the two lines.
    pub fn predict(&self, batch: usize) -> f64 {
        let whole = self.whole().at(batch);
        let forward = self.forward.map(|f| f.at(batch)).unwrap_or(f64::MIN);
        self.persistent_bytes + whole.max(forward)
    }

    /// Largest per-device batch whose predicted peak fits under `cap` bytes (0 if none, and 0
    /// when no line grows with the batch: the model then says nothing about large batches).
    pub fn max_batch_under(&self, cap: u64) -> usize {
        let room = cap as f64 - self.persistent_bytes;
        [Some(self.whole()), self.forward]
            .into_iter()
            .flatten()
            .filter_map(|l| l.max_batch(room))
            .min()
            .unwrap_or(0)
    }
}

/// One real step at a batch during a max-batch search.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    pub batch: usize,
    /// Measured peak; None when the step ran out of device memory.
    pub peak_bytes: Option<u64>,
    pub fits: bool,
}

/// The largest batch that fits, found with real steps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchSearch {
    /// Largest batch seen to fit (None: not even the smallest batch fits).
    pub max_fit: Option<usize>,
    /// Smallest batch seen not to fit (None: every batch up to the limit fits).
    pub min_fail: Option<usize>,
    /// Every step taken, in order.
    pub probes: Vec<Probe>,
    pub limit: usize,
}

impl BatchSearch {
    /// Whether the search pinned the boundary: `max_fit + 1 == min_fail`.
    pub fn exact(&self) -> bool {
        match (self.max_fit, self.min_fail) {
            (Some(a), Some(b)) => a + 1 == b,
            (None, Some(b)) => b == self.probes.iter().map(|p| p.batch).min().unwrap_or(b),
            _ => false,
        }
    }
}

/// Finds the largest batch in `[min, limit]` for which `probe` reports a fit, assuming fitting
/// is monotone in the batch. Starts at `guess` (the model's prediction), gallops outwards until
/// the boundary is bracketed, then bisects: a good guess costs two steps, a bad one O(log n).
pub fn search_max_batch<E>(
    guess: usize,
    min: usize,
    limit: usize,
    mut probe: impl FnMut(usize) -> Result<Probe, E>,
) -> Result<BatchSearch, E> {
    let limit = limit.max(min);
    let mut probes = Vec::new();
    let mut run = |b: usize, probes: &mut Vec<Probe>| -> Result<bool, E> {
        let p = probe(b)?;
        probes.push(p);
        Ok(p.fits)
    };
    let start = guess.clamp(min, limit);
    let (mut lo, mut hi): (Option<usize>, Option<usize>) = (None, None);
    if run(start, &mut probes)? {
        lo = Some(start);
        let mut step = 1;
        while lo != Some(limit) {
            let b = (lo.unwrap() + step).min(limit);
            if run(b, &mut probes)? {
                lo = Some(b);
                step *= 2;
            } else {
                hi = Some(b);
                break;
            }
        }
    } else {
        hi = Some(start);
        let mut step = 1;
        while hi != Some(min) {
            let b = hi.unwrap().saturating_sub(step).max(min);
            if run(b, &mut probes)? {
                lo = Some(b);
                break;
            }
            hi = Some(b);
            step *= 2;
        }
    }
    if let (Some(mut l), Some(mut h)) = (lo, hi) {
        while h - l > 1 {
            let mid = l + (h - l) / 2;
            if run(mid, &mut probes)? {
                l = mid;
            } else {
                h = mid;
            }
        }
        lo = Some(l);
        hi = Some(h);
    }
    Ok(BatchSearch {
        max_fit: lo,
        min_fail: hi,
        probes,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(batch: usize, peak: u64) -> MemoryPoint {
        MemoryPoint {
            batch,
            peak_bytes: peak,
            persistent_bytes: 1000,
            forward_peak_bytes: None,
        }
    }

    #[test]
    fn fits_a_line_and_inverts_it() {
        let m = MemoryModel::fit(&[pt(2, 1000 + 300 + 200), pt(4, 1000 + 300 + 400)]).unwrap();
        assert!((m.per_sample_bytes - 100.0).abs() < 1e-9);
        assert!((m.intercept_bytes - 300.0).abs() < 1e-9);
        assert!((m.predict(10) - 2300.0).abs() < 1e-9);
        assert_eq!(m.max_batch_under(2300), 10);
        assert_eq!(m.max_batch_under(1200), 0);
    }

    /// Two batches where the backward pass's gradients set the peak: the whole-step line is
    /// flat, the forward pass's line carries the activations, and the model follows the larger.
    #[test]
    fn the_forward_line_takes_over_where_the_activations_outgrow_the_gradients() {
        let at = |batch: usize, fwd: u64| MemoryPoint {
            forward_peak_bytes: Some(1000 + fwd),
            ..pt(batch, 1000 + 500)
        };
        let m = MemoryModel::fit(&[at(2, 200), at(4, 400)]).unwrap();
        assert_eq!(m.per_sample_bytes, 0.0);
        let f = m.forward.unwrap();
        assert!((f.per_sample_bytes - 100.0).abs() < 1e-9);
        assert!(
            (m.predict(3) - 1500.0).abs() < 1e-9,
            "gradients set the peak"
        );
        assert!(
            (m.predict(10) - 2000.0).abs() < 1e-9,
            "activations set the peak"
        );
        assert_eq!(m.max_batch_under(2000), 10);
        assert_eq!(m.max_batch_under(1499), 0);
        assert!((m.activation_bytes_per_sample() - 100.0).abs() < 1e-9);
        // Without the forward line, a flat whole-step line bounds nothing.
        let flat = MemoryModel::fit(&[pt(2, 1500), pt(4, 1500)]).unwrap();
        assert_eq!(flat.max_batch_under(2000), 0);
    }

    #[test]
    fn refuses_one_batch_or_mixed_models() {
        assert_eq!(
            MemoryModel::fit(&[pt(2, 5), pt(2, 6)]),
            Err(MemoryModelError::TooFewBatches(1))
        );
        let mut b = pt(4, 9);
        b.persistent_bytes = 7;
        assert!(matches!(
            MemoryModel::fit(&[pt(2, 5), b]),
            Err(MemoryModelError::MixedModels(..))
        ));
    }

    fn threshold(t: usize) -> impl FnMut(usize) -> Result<Probe, ()> {
        move |b| {
            Ok(Probe {
                batch: b,
                peak_bytes: Some(b as u64),
                fits: b <= t,
            })
        }
    }

    #[test]
    fn search_finds_the_boundary_from_any_guess() {
        for t in 0..40 {
            for guess in 0..45 {
                let s = search_max_batch(guess, 2, 32, threshold(t)).unwrap();
                let want = if t < 2 { None } else { Some(t.min(32)) };
                assert_eq!(s.max_fit, want, "threshold {t}, guess {guess}");
                assert_eq!(
                    s.min_fail,
                    (t < 32).then_some(t.max(1) + 1),
                    "t {t} g {guess}"
                );
                if t < 32 {
                    assert!(s.exact(), "t {t} g {guess}: {s:?}");
                }
                assert!(
                    s.probes.len() <= 12,
                    "t {t} g {guess}: {} probes",
                    s.probes.len()
                );
                assert!(s.probes.iter().all(|p| (2..=32).contains(&p.batch)));
            }
        }
    }

    #[test]
    fn a_right_guess_costs_two_steps() {
        let s = search_max_batch(9, 1, 64, threshold(9)).unwrap();
        assert_eq!(
            s.probes.iter().map(|p| p.batch).collect::<Vec<_>>(),
            [9, 10]
        );
    }

    #[test]
    fn probe_errors_stop_the_search() {
        let r = search_max_batch(4, 1, 8, |b| {
            if b > 4 {
                Err(b)
            } else {
                threshold(100)(b).map_err(|_| 0)
            }
        });
        assert_eq!(r, Err(5));
    }
}
