//! The Cues element: one CuePoint per seekable cluster.
//!
//! They are written after the Clusters, as `ffmpeg -c copy` writes them: the
//! head before the clusters then does not grow with the keyframes, and no
//! position depends on the Cues' own size. A player finds them through the
//! SeekHead.

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

    /// Encodes the Cues with cluster `i` at `position(i)` from the Segment data start (they
    /// come after the clusters, so no position depends on their size). Empty when there are
    /// no points: an empty Cues is invalid.
    pub fn encode_pointing(&self, position: impl Fn(usize) -> u64) -> Vec<u8> {
        if self.points.is_empty() {
            return Vec::new();
        }
        let body = self.body_len(&position);
        let mut out = Vec::with_capacity(usize::try_from(body).unwrap_or(0) + 12);
        write_header(&mut out, ebml::ID_CUES, body);
        for cue in &self.points {
            encode_cue_point(&mut out, cue, position(cue.cluster));
        }
        out
    }
}

/// Appends one CuePoint for `cue`, whose cluster is at `cluster_position` from the Segment's
/// data start: the Cues element's body is these, one after the other.
pub fn encode_cue_point(out: &mut Vec<u8>, cue: &Cue, cluster_position: u64) {
    write_header(
        out,
        ebml::ID_CUEPOINT,
        cue_point_body_len(cue, cluster_position),
    );
    write_uint(out, ebml::ID_CUETIME, cue.time);
    write_header(
        out,
        ebml::ID_CUETRACKPOSITIONS,
        track_positions_body_len(cue, cluster_position),
    );
    write_uint(out, ebml::ID_CUETRACK, cue.track);
    write_uint(out, ebml::ID_CUECLUSTERPOSITION, cluster_position);
    write_uint(out, ebml::ID_CUERELATIVEPOSITION, cue.relative);
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
    fn cue_points_point_at_their_clusters_positions() {
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
        let bytes = cues.encode_pointing(|cluster| 100 + cluster as u64 * 40_000);
        let cues_element = Children::new(&bytes).next().expect("Cues element");
        assert_eq!(cues_element.id, ebml::ID_CUES);
        assert_eq!(cues_element.raw.len(), bytes.len(), "one element");
        let points: Vec<_> = Children::new(cues_element.data).collect();
        assert_eq!(points.len(), 300);
        let last = points.last().expect("a CuePoint");
        let positions = Children::new(last.data)
            .find(|c| c.id == ebml::ID_CUETRACKPOSITIONS)
            .expect("CueTrackPositions");
        let cluster = Children::new(positions.data)
            .find(|c| c.id == ebml::ID_CUECLUSTERPOSITION)
            .and_then(|c| read_uint(c.data));
        assert_eq!(cluster, Some(100 + 299 * 40_000));
    }

    #[test]
    fn no_points_means_no_cues_element() {
        let cues = Cues::default();
        assert!(cues.encode_pointing(|_| 0).is_empty());
    }
}
