//! The scheduling pass: finds the chains of row-kernel stages that the
//! executor runs as fused segments (`super::fuse`).
//!
//! A chain is a path of nodes where every member declares a
//! [`RowShape`](crate::stages::row_kernel::RowShape), takes exactly one
//! input, and every member but the last has exactly one consumer (the
//! next member) and is not a pipeline output, so its value never needs to
//! exist as a whole frame. Whether a member's kernel is available for a
//! given frame (a gray-world white balance needs the pixels first) is
//! decided when the segment runs.

use super::build::Pipeline;

/// For every node, the next member of its chain (`None` where a chain
/// ends or the node is not in one). `eligible[i]` false keeps node `i`
/// out of every chain (skipped nodes, stages placed on CUDA).
pub fn next_in_chain(p: &Pipeline, eligible: &[bool]) -> Vec<Option<usize>> {
    let members: Vec<bool> = p
        .nodes
        .iter()
        .zip(eligible)
        .map(|(nd, &e)| e && nd.stage.row_shape().is_some())
        .collect();
    next_member(p, &members)
}

/// As [`next_in_chain`] for any membership rule: `member[i]` says whether
/// node `i` may be in a chain at all (for device-resident segments, the
/// stages placed on CUDA; see `super::device_segment`). A chain still
/// needs one input per member and no value but the last one's used
/// elsewhere or as an output.
pub fn next_member(p: &Pipeline, member: &[bool]) -> Vec<Option<usize>> {
    let n = p.nodes.len();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, nd) in p.nodes.iter().enumerate() {
        for &j in &nd.inputs {
            consumers[j].push(k);
        }
    }
    let row_stage = |i: usize| member[i] && i != p.source && p.nodes[i].inputs.len() == 1;
    (0..n)
        .map(|i| {
            if !row_stage(i) || p.outputs.contains(&i) {
                return None;
            }
            match consumers[i].as_slice() {
                [k] if row_stage(*k) => Some(*k),
                _ => None,
            }
        })
        .collect()
}

/// The chain that starts at node `i`: `i` and its successors.
pub fn chain_from(next: &[Option<usize>], i: usize) -> Vec<usize> {
    let mut c = vec![i];
    let mut at = i;
    while let Some(k) = next[at] {
        c.push(k);
        at = k;
    }
    c
}
