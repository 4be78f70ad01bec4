//! The Cues element: one CuePoint per seekable cluster.
//!
//! Cues are written before the Clusters so a player can seek after reading
//! the first few kilobytes. Their positions point past themselves, so their
//! size depends on the positions they hold; [`Cues::layout`] finds the fixed
//! point.

use crate::ebml::{self, header_len, uint_element_len, write_header, write_uint};

/// One seek target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cue {
    /// Presentation time of the keyframe, in timestamp units.
    pub time: u64,
    /// Track the keyframe belongs to.
    pub track: u64,
    /// Index of the output cluster holding it.
    pub cluster: usize,
    /// Offset of the block inside the output cluster's data.
    pub relative: u64,
}

/// The cue list, and the encoded element once positions are known.
#[derive(Debug, Default, Clone)]
pub struct Cues {
    /// Cue points in file order.
    pub points: Vec<Cue>,
}

impl Cues {
    /// Size of the Cues element's data given each cluster's offset from the Segment data start.
    fn body_len(&self, cluster_position: impl Fn(usize) -> u64) -> u64 {
        self.points
            .iter()
            .map(|cue| {
                let point = cue_point_body_len(cue, cluster_position(cue.cluster));
                header_len(ebml::ID_CUEPOINT, point) as u64 + point
            })
            .sum()
    }

    /// Length of the Cues element when it starts at `cues_position` and clusters follow it.
    ///
    /// `cluster_offsets[i]` is cluster `i`'s offset from the end of the Cues.
    /// Returns 0 when there is nothing to index (an empty Cues is invalid).
    pub fn layout(&self, cues_position: u64, cluster_offsets: &[u64]) -> u64 {
        if self.points.is_empty() {
            return 0;
        }
        // Positions only grow with the Cues' size and their encodings with
        // them, so iterating from 0 climbs monotonically to the fixed point.
        let mut len = 0;
        loop {
            let body = self.body_len(|cluster| {
                cues_position + len + cluster_offsets.get(cluster).copied().unwrap_or(0)
            });
            let next = header_len(ebml::ID_CUES, body) as u64 + body;
            if next == len {
                return len;
            }
            len = next;
        }
    }

    /// Encodes the Cues laid out by [`Cues::layout`]; empty when there are no points.
    pub fn encode(&self, cues_position: u64, cues_len: u64, cluster_offsets: &[u64]) -> Vec<u8> {
        if self.points.is_empty() {
            return Vec::new();
        }
        let position = |cluster: usize| {
            cues_position + cues_len + cluster_offsets.get(cluster).copied().unwrap_or(0)
        };
        let mut out = Vec::with_capacity(usize::try_from(cues_len).unwrap_or(0));
        write_header(&mut out, ebml::ID_CUES, self.body_len(position));
        for cue in &self.points {
            let cluster_position = position(cue.cluster);
            write_header(
                &mut out,
                ebml::ID_CUEPOINT,
                cue_point_body_len(cue, cluster_position),
            );
            write_uint(&mut out, ebml::ID_CUETIME, cue.time);
            write_header(
                &mut out,
                ebml::ID_CUETRACKPOSITIONS,
                track_positions_body_len(cue, cluster_position),
            );
            write_uint(&mut out, ebml::ID_CUETRACK, cue.track);
            write_uint(&mut out, ebml::ID_CUECLUSTERPOSITION, cluster_position);
            write_uint(&mut out, ebml::ID_CUERELATIVEPOSITION, cue.relative);
        }
        out
    }
}

fn track_positions_body_len(cue: &Cue, cluster_position: u64) -> u64 {
    (uint_element_len(ebml::ID_CUETRACK, cue.track)
        + uint_element_len(ebml::ID_CUECLUSTERPOSITION, cluster_position)
        + uint_element_len(ebml::ID_CUERELATIVEPOSITION, cue.relative)) as u64
}

fn cue_point_body_len(cue: &Cue, cluster_position: u64) -> u64 {
    let positions = track_positions_body_len(cue, cluster_position);
    uint_element_len(ebml::ID_CUETIME, cue.time) as u64
        + header_len(ebml::ID_CUETRACKPOSITIONS, positions) as u64
        + positions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebml::{read_uint, Children};

    #[test]
    fn encoded_cues_have_the_laid_out_length_and_point_past_themselves() {
        let cues = Cues {
            points: (0..300)
                .map(|i| Cue {
                    time: i * 1000,
                    track: 1,
                    cluster: i as usize,
                    relative: 3,
                })
                .collect(),
        };
        let offsets: Vec<u64> = (0..300).map(|i| i * 40_000).collect();
        let len = cues.layout(100, &offsets);
        let bytes = cues.encode(100, len, &offsets);
        assert_eq!(bytes.len() as u64, len);
        let cues_element = Children::new(&bytes).next().expect("Cues element");
        assert_eq!(cues_element.id, ebml::ID_CUES);
        let last = Children::new(cues_element.data).last().expect("a CuePoint");
        let positions = Children::new(last.data)
            .find(|c| c.id == ebml::ID_CUETRACKPOSITIONS)
            .expect("CueTrackPositions");
        let cluster = Children::new(positions.data)
            .find(|c| c.id == ebml::ID_CUECLUSTERPOSITION)
            .and_then(|c| read_uint(c.data));
        assert_eq!(cluster, Some(100 + len + 299 * 40_000));
    }

    #[test]
    fn no_points_means_no_cues_element() {
        let cues = Cues::default();
        assert_eq!(cues.layout(0, &[]), 0);
        assert!(cues.encode(0, 0, &[]).is_empty());
    }
}
