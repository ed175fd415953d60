//! The hour-of-day effect of one offer: a smooth periodic function of the
//! UTC hour, learned from conversions against what the hour-free model
//! expected, with its amplitude and smoothness estimated from the data.
//!
//! The log-multiplier of hour `h` is `θ(h) = Σⱼ aⱼ cos(2πjh/24) + bⱼ sin(2πjh/24)`
//! for `j = 1..=HARMONICS`, with independent Gaussian priors on the
//! coefficients whose variances fall with the harmonic (`∝ j^-p`): a
//! Gaussian process on the circle, so neighbouring hours share evidence and
//! a daily cycle shows after a day or two instead of needing every hour's
//! own data. The prior's overall scale `s` (the standard deviation of
//! `θ(h)`) and decay `p` are not fixed: every point of a small grid is
//! fitted (Poisson likelihood, Laplace approximation) and the fits are
//! averaged with their posterior weights (the marginal likelihood times a
//! prior over the grid that the router pools across a smartlink's offers).
//! An offer without a daily pattern thus keeps multipliers near 1 and a
//! small uncertainty; a strong sharp one (a 4-hour evening peak) is followed
//! once the data asks for it.

// Small dense linear algebra reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::f64::consts::PI;

/// Harmonics of the daily cycle (the shortest period is 24/HARMONICS h).
const HARMONICS: usize = 6;
/// Coefficients: a level (the effect is relative to the hour-free rate,
/// which the routing's mix of hours biases) and two per harmonic.
const F: usize = 2 * HARMONICS + 1;
/// Prior variance of the level.
const LEVEL_VAR: f64 = 0.25;
/// Standard deviations of the log-multiplier over the hours.
const SCALES: [f64; 5] = [0.03, 0.12, 0.25, 0.45, 0.8];
/// Decay exponents of the coefficients' variances with the harmonic.
const DECAYS: [f64; 3] = [0.5, 1.5, 3.0];
pub(super) const GRID: usize = SCALES.len() * DECAYS.len();
/// Prior over the scales before any pooling: small effects are likelier.
const SCALE_PRIOR: [f64; 5] = [0.6, 0.25, 0.1, 0.04, 0.01];
const NEWTON_STEPS: usize = 8;
/// Posterior weight of a grid point below which its variances are not
/// computed (taken as 0).
const NEGLIGIBLE_WEIGHT: f64 = 1e-6;

/// The grid's prior weights with nothing learned.
pub(super) fn base_prior() -> [f64; GRID] {
    let mut w = [0.0; GRID];
    for (si, &ps) in SCALE_PRIOR.iter().enumerate() {
        for di in 0..DECAYS.len() {
            w[si * DECAYS.len() + di] = ps / DECAYS.len() as f64;
        }
    }
    w
}

/// What one fit gives: per hour the posterior mean multiplier and the
/// variance of its logarithm, and the posterior weights over the grid.
pub(super) struct HourFit {
    pub mult: [f64; 24],
    pub var: [f64; 24],
    pub weights: [f64; GRID],
    /// Posterior mean of the scale `s`.
    pub scale: f64,
}

fn basis() -> [[f64; F]; 24] {
    let mut b = [[0.0; F]; 24];
    for (h, row) in b.iter_mut().enumerate() {
        for j in 0..HARMONICS {
            let x = 2.0 * PI * (j + 1) as f64 * h as f64 / 24.0;
            row[2 * j] = x.cos();
            row[2 * j + 1] = x.sin();
            row[F - 1] = 1.0;
        }
    }
    b
}

/// In-place Cholesky factor (lower) of a symmetric positive-definite
/// matrix; returns `false` if it is not.
fn cholesky(a: &mut [[f64; F]; F]) -> bool {
    for j in 0..F {
        let mut d = a[j][j];
        for k in 0..j {
            d -= a[j][k] * a[j][k];
        }
        if d <= 1e-300 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j][j] = d;
        for i in j + 1..F {
            let mut s = a[i][j];
            for k in 0..j {
                s -= a[i][k] * a[j][k];
            }
            a[i][j] = s / d;
        }
    }
    true
}

/// `‖L⁻¹ r‖² = rᵀ (L Lᵀ)⁻¹ r`: one forward substitution.
fn quad_inv(l: &[[f64; F]; F], r: &[f64; F]) -> f64 {
    let mut x = [0.0; F];
    let mut q = 0.0;
    for i in 0..F {
        let mut s = r[i];
        for k in 0..i {
            s -= l[i][k] * x[k];
        }
        x[i] = s / l[i][i];
        q += x[i] * x[i];
    }
    q
}

/// Solves `L Lᵀ x = b` in place.
fn solve(l: &[[f64; F]; F], x: &mut [f64; F]) {
    for i in 0..F {
        let mut s = x[i];
        for k in 0..i {
            s -= l[i][k] * x[k];
        }
        x[i] = s / l[i][i];
    }
    for i in (0..F).rev() {
        let mut s = x[i];
        for k in i + 1..F {
            s -= l[k][i] * x[k];
        }
        x[i] = s / l[i][i];
    }
}

/// Fits the hour effect to expected (`e`) and observed (`k`) conversions
/// per UTC hour, with `prior` the grid's prior weights.
pub(super) fn fit(e: &[f64; 24], k: &[f64; 24], prior: &[f64; GRID]) -> HourFit {
    let b = basis();
    let mut log_w = [f64::NEG_INFINITY; GRID];
    let mut thetas = [[0.0; 24]; GRID];
    // The Hessian's factor at each grid point's mode, for the variances,
    // which are computed only where the grid point's weight counts.
    let mut factors = [[[0.0; F]; F]; GRID];
    for (si, &s) in SCALES.iter().enumerate() {
        for (di, &p) in DECAYS.iter().enumerate() {
            let g = si * DECAYS.len() + di;
            if prior[g] <= 0.0 {
                continue;
            }
            let total: f64 = (1..=HARMONICS).map(|j| (j as f64).powf(-p)).sum();
            let mut prec = [0.0; F];
            for j in 0..HARMONICS {
                let v = s * s * ((j + 1) as f64).powf(-p) / total;
                prec[2 * j] = 1.0 / v;
                prec[2 * j + 1] = 1.0 / v;
            }
            prec[F - 1] = 1.0 / LEVEL_VAR;
            let mut c = [0.0; F];
            let mut l = [[0.0; F]; F];
            let mut theta = [0.0; 24];
            let mut ok = false;
            for _ in 0..NEWTON_STEPS {
                for h in 0..24 {
                    theta[h] = (0..F).map(|f| b[h][f] * c[f]).sum::<f64>().clamp(-4.0, 4.0);
                }
                let mut grad = [0.0; F];
                for f in 0..F {
                    grad[f] = -prec[f] * c[f];
                }
                for (i, row) in l.iter_mut().enumerate() {
                    *row = [0.0; F];
                    row[i] = prec[i];
                }
                for h in 0..24 {
                    let m = e[h] * theta[h].exp();
                    let r = k[h] - m;
                    for f in 0..F {
                        grad[f] += b[h][f] * r;
                        let bm = b[h][f] * m;
                        for (g2, x) in l[f].iter_mut().enumerate().take(f + 1) {
                            *x += bm * b[h][g2];
                        }
                    }
                }
                if !cholesky(&mut l) {
                    ok = false;
                    break;
                }
                ok = true;
                let mut step = grad;
                solve(&l, &mut step);
                let norm = step.iter().map(|x| x * x).sum::<f64>().sqrt();
                let damp = if norm > 2.0 { 2.0 / norm } else { 1.0 };
                for f in 0..F {
                    c[f] += damp * step[f];
                }
                if norm < 1e-6 {
                    break;
                }
            }
            if !ok {
                continue;
            }
            // Final state: θ, the Hessian's factor at the mode, and the
            // Laplace approximation of the marginal likelihood (relative to
            // "no hour effect").
            let mut h_mat = [[0.0; F]; F];
            for (i, row) in h_mat.iter_mut().enumerate() {
                row[i] = prec[i];
            }
            let mut ll = 0.0;
            for h in 0..24 {
                theta[h] = (0..F).map(|f| b[h][f] * c[f]).sum::<f64>().clamp(-4.0, 4.0);
                let m = e[h] * theta[h].exp();
                ll += k[h] * theta[h] - (m - e[h]);
                for f in 0..F {
                    let bm = b[h][f] * m;
                    for (g2, x) in h_mat[f].iter_mut().enumerate().take(f + 1) {
                        *x += bm * b[h][g2];
                    }
                }
            }
            if !cholesky(&mut h_mat) {
                continue;
            }
            let mut log_det = 0.0;
            let mut quad = 0.0;
            for f in 0..F {
                log_det += 2.0 * h_mat[f][f].ln() - prec[f].ln();
                quad += prec[f] * c[f] * c[f];
            }
            log_w[g] = prior[g].ln() + ll - 0.5 * quad - 0.5 * log_det;
            thetas[g] = theta;
            factors[g] = h_mat;
        }
    }
    let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut weights = [0.0; GRID];
    if !top.is_finite() {
        return HourFit { mult: [1.0; 24], var: [0.0; 24], weights: *prior, scale: 0.0 };
    }
    let mut sum = 0.0;
    for g in 0..GRID {
        weights[g] = (log_w[g] - top).exp();
        sum += weights[g];
    }
    let mut mult = [0.0; 24];
    let mut second = [0.0; 24];
    let mut scale = 0.0;
    for g in 0..GRID {
        weights[g] /= sum;
        let w = weights[g];
        if w == 0.0 {
            continue;
        }
        scale += w * SCALES[g / DECAYS.len()];
        for h in 0..24 {
            // The variance of the periodic part only: the level's is the
            // hour-free rate's own uncertainty, which the rate's posterior
            // already carries. Negligible grid points (most of them, once
            // the data has chosen) skip it: their share of the spread is
            // below the weight itself.
            let v = if w < NEGLIGIBLE_WEIGHT {
                0.0
            } else {
                let mut row = b[h];
                row[F - 1] = 0.0;
                quad_inv(&factors[g], &row).max(0.0)
            };
            // The median multiplier of each fit (e^θ), and its log-normal
            // spread: E[e^{2θ}] / e^{2θ} = e^{2v}.
            let t = thetas[g][h];
            mult[h] += w * t.exp();
            second[h] += w * (2.0 * t + v).exp();
        }
    }
    let mut var = [0.0; 24];
    for h in 0..24 {
        var[h] = (second[h] / (mult[h] * mult[h]) - 1.0).max(0.0);
    }
    // The multipliers are relative to the hour-free rate, which is learned
    // from clicks weighted by the multipliers in force: their mean over the
    // offer's own exposure is held at 1, or a drift of the fitted level
    // would feed back through those weights and run away.
    let (mut se, mut sm) = (0.0, 0.0);
    for h in 0..24 {
        se += e[h];
        sm += e[h] * mult[h];
    }
    if se > 0.0 && sm > 0.0 {
        let norm = se / sm;
        for m in &mut mult {
            *m *= norm;
        }
    }
    HourFit { mult, var, weights, scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_leaves_every_hour_at_one() {
        let f = fit(&[0.0; 24], &[0.0; 24], &base_prior());
        for h in 0..24 {
            assert!((f.mult[h] - 1.0).abs() < 0.05, "hour {h}: {}", f.mult[h]);
        }
    }

    #[test]
    fn a_smooth_daily_cycle_is_recovered_from_a_few_conversions_an_hour() {
        // Two days at ~8 expected conversions an hour, CR ×(1 ± 0.6).
        let mut e = [0.0; 24];
        let mut k = [0.0; 24];
        for h in 0..24 {
            e[h] = 16.0;
            k[h] = (16.0 * (1.0 + 0.6 * (2.0 * PI * h as f64 / 24.0).cos())).round();
        }
        let f = fit(&e, &k, &base_prior());
        assert!(f.mult[0] > 1.35 && f.mult[12] < 0.65, "{:?}", f.mult);
    }

    #[test]
    fn noise_alone_gives_multipliers_near_one() {
        let e = [10.0; 24];
        let mut k = [10.0; 24];
        for (h, x) in k.iter_mut().enumerate() {
            *x += [3.0, -3.0, 1.0, -2.0, 2.0, 0.0][h % 6];
        }
        let f = fit(&e, &k, &base_prior());
        for h in 0..24 {
            assert!((f.mult[h] - 1.0).abs() < 0.12, "hour {h}: {}", f.mult[h]);
        }
    }
}
