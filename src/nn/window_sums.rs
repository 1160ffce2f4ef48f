//! Sums over a sliding window of a row by a pair-sum ladder: a fixed sum
//! tree per window (so a sum depends on the window's values alone, not on
//! where the row starts), in about log2(span) adds per output value. Used
//! by the box means of [`super::gated_smoothing`] (`i32`, wrapping) and
//! [`super::chroma_guided`] (`f32`).

/// The addition a ladder uses: `i32` wraps (the gated smoothing's exact
/// integer sums), `f32` rounds.
pub(super) trait LadderAdd: Copy {
    /// `self + other`.
    fn ladder_add(self, other: Self) -> Self;
}

impl LadderAdd for i32 {
    #[inline(always)]
    fn ladder_add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
}

impl LadderAdd for f32 {
    #[inline(always)]
    fn ladder_add(self, other: Self) -> Self {
        self + other
    }
}

/// `out[x] = Σ_{d < span} c[x + d]` (`c.len() >= out.len() + span - 1`) by
/// the pair-sum ladder: `ladder[j][x] = Σ_{d < 2^(j+1)} c[x + d]` (the
/// caller gives `floor(log2(span))` rows of at least `c.len()` values),
/// then the levels of `span`'s binary digits, largest first.
#[inline(always)]
pub(super) fn window_sums<T: LadderAdd>(
    c: &[T],
    ladder: &mut [Vec<T>],
    span: usize,
    out: &mut [T],
) {
    let w = out.len();
    for j in 0..ladder.len() {
        let half = 1 << j;
        let n = c.len() + 1 - 2 * half;
        let (done, rest) = ladder.split_at_mut(j);
        let prev: &[T] = if j == 0 { c } else { &done[j - 1] };
        rest[0][..n]
            .iter_mut()
            .zip(&prev[..n])
            .zip(&prev[half..half + n])
            .for_each(|((o, &a), &b)| *o = a.ladder_add(b));
    }
    let level = |j: usize| -> &[T] {
        if j == 0 {
            c
        } else {
            &ladder[j - 1]
        }
    };
    let top = ladder.len(); // 2^top <= span < 2^(top + 1)
    out.copy_from_slice(&level(top)[..w]);
    let mut off = 1 << top;
    for j in (0..top).rev() {
        if span & (1 << j) != 0 {
            out.iter_mut()
                .zip(&level(j)[off..off + w])
                .for_each(|(o, &v)| *o = o.ladder_add(v));
            off += 1 << j;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_sums_equal_plain_window_sums() {
        let c: Vec<i32> = (0..40).map(|i| (i * 7919 % 101) - 50).collect();
        for span in 1..=17usize {
            let w = c.len() + 1 - span;
            let levels = usize::BITS as usize - 1 - span.leading_zeros() as usize;
            let mut ladder = vec![vec![0i32; c.len()]; levels];
            let mut out = vec![0i32; w];
            window_sums(&c, &mut ladder, span, &mut out);
            let plain: Vec<i32> = (0..w).map(|x| c[x..x + span].iter().sum()).collect();
            assert_eq!(out, plain, "span {span}");
            let cf: Vec<f32> = c.iter().map(|&v| v as f32).collect();
            let mut lf = vec![vec![0f32; c.len()]; levels];
            let mut of = vec![0f32; w];
            window_sums(&cf, &mut lf, span, &mut of);
            let pf: Vec<f32> = plain.iter().map(|&v| v as f32).collect();
            assert_eq!(of, pf, "span {span} (f32, small integers are exact)");
        }
    }
}
