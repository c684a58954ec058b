//! Synthetic devices computed on demand from (seed, index), so a million-device hub costs no
//! memory and starts instantly; only devices that are created, changed or deleted are stored.

use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{AuthType, ConnectionState, DeviceRecord, DeviceStatus, NEVER};

const CITIES: &[&str] = &[
    "Amsterdam",
    "Berlin",
    "Chicago",
    "Dublin",
    "Lisbon",
    "Madrid",
    "Oslo",
    "Paris",
    "Seattle",
    "Tokyo",
];
const MODELS: &[&str] = &[
    "dtmi:com:example:Thermostat;1",
    "dtmi:com:example:TemperatureController;2",
    "dtmi:contoso:AirQualitySensor;1",
    "dtmi:contoso:SmartMeter;3",
    "",
];
/// 2026-01-01T00:00:00Z; seeded timestamps fall within the 30 days after it.
const EPOCH_2026: i64 = 1_767_225_600;

/// Every character a device id may hold, in ASCII (ordinal) order: "ASCII 7-bit
/// alphanumeric characters plus the following special characters:
/// `- : . + % _ # * ? ! ( ) , = @ ; $ '`" (IoT Hub identity registry, device identity
/// properties, <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry>).
pub(crate) const DEVICE_ID_CHARACTERS: &str =
    "!#$%'()*+,-.0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// How seeded device ids look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdStyle {
    /// `device-000042`: one shared prefix, like many real fleets.
    #[default]
    Sequential,
    /// `<c>000042`, the first character `c` walking through every character a device id
    /// may start with, so the ids use the whole alphabet (partitioned reads are tested on it).
    EveryFirstCharacter,
}

/// The stable, sortable ids of seeded devices: zero-padded so that lexical order is index order.
#[derive(Clone, Debug)]
pub(crate) struct SeededIds {
    pub(crate) count: u64,
    width: usize,
    style: IdStyle,
}

const PREFIX: &str = "device-";

impl SeededIds {
    pub(crate) fn new(count: u64, style: IdStyle) -> Self {
        let digits = count.saturating_sub(1).max(1).to_string().len();
        SeededIds {
            count,
            width: digits.max(6),
            style,
        }
    }

    /// The first character of the id of `index` in the [`IdStyle::EveryFirstCharacter`]
    /// style: non-decreasing in the index, so ids still sort like indexes.
    fn first_character(&self, index: u64) -> char {
        let alphabet = DEVICE_ID_CHARACTERS.as_bytes();
        let slot =
            (u128::from(index) * alphabet.len() as u128 / u128::from(self.count.max(1))) as usize;
        char::from(alphabet[slot.min(alphabet.len() - 1)])
    }

    pub(crate) fn id(&self, index: u64) -> String {
        match self.style {
            IdStyle::Sequential => format!("{PREFIX}{index:0width$}", width = self.width),
            IdStyle::EveryFirstCharacter => {
                format!(
                    "{}{index:0width$}",
                    self.first_character(index),
                    width = self.width
                )
            }
        }
    }

    pub(crate) fn index_of(&self, device_id: &str) -> Option<u64> {
        let digits = match self.style {
            IdStyle::Sequential => device_id.strip_prefix(PREFIX)?,
            IdStyle::EveryFirstCharacter => device_id.get(1..)?,
        };
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let index: u64 = digits.parse().ok()?;
        (index < self.count && self.id(index) == device_id).then_some(index)
    }

    /// The first index whose id sorts after `after` (ids are ordered like their indexes).
    pub(crate) fn first_index_after(&self, after: &str) -> u64 {
        self.first_index_where(|id| id > after)
    }

    /// The first index whose id sorts at or after `at`.
    pub(crate) fn first_index_at_or_after(&self, at: &str) -> u64 {
        self.first_index_where(|id| id >= at)
    }

    /// Binary search for the first index whose id satisfies a predicate that is monotonic
    /// in the index.
    fn first_index_where(&self, past: impl Fn(&str) -> bool) -> u64 {
        let (mut low, mut high) = (0u64, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            if past(self.id(mid).as_str()) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    }
}

/// SplitMix64: a tiny, well-known mixing function; hand-written because it is five lines and
/// gives the same stream on every platform, which a seeded emulator needs.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn derived_key(seed: u64, label: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(label.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

pub(crate) fn timestamp(unix_seconds: i64, fraction: u32) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            fraction % 10_000_000
        ),
        Err(_) => NEVER.to_string(),
    }
}

/// Whether a computed device carries its symmetric keys: twins never show them, so the query
/// skips deriving them (two SHA-256 per device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keys {
    Derive,
    Skip,
}

pub(crate) fn seeded_device(seed: u64, ids: &SeededIds, index: u64, keys: Keys) -> DeviceRecord {
    let h = mix(seed ^ mix(index));
    let h2 = mix(h);
    let device_id = ids.id(index);
    let iot_edge = h.is_multiple_of(10);
    let status = if (h >> 8).is_multiple_of(20) {
        DeviceStatus::Disabled
    } else {
        DeviceStatus::Enabled
    };
    let connected = status == DeviceStatus::Enabled && !(h >> 16).is_multiple_of(3);
    let self_signed = !iot_edge && (h >> 24).is_multiple_of(8);
    let city = CITIES[((h >> 32) % CITIES.len() as u64) as usize];
    let building = (h >> 40) % 12 + 1;
    let floor = (h >> 48) % 9;
    let model_id = if iot_edge {
        ""
    } else {
        MODELS[((h2 >> 8) % MODELS.len() as u64) as usize]
    };
    let created = EPOCH_2026 + (h2 % (30 * 86_400)) as i64;
    let activity = created + ((h2 >> 24) % 86_400) as i64;
    let fraction = (h2 >> 40) as u32;
    let (primary_key, secondary_key, primary_thumbprint, secondary_thumbprint) = if self_signed {
        (
            None,
            None,
            Some(format!("{:016X}{:016X}{:08X}", h, h2, (h >> 32) as u32)),
            Some(format!("{:016X}{:016X}{:08X}", h2, h, (h2 >> 32) as u32)),
        )
    } else if keys == Keys::Derive {
        (
            Some(derived_key(seed, &format!("{device_id}/primary"))),
            Some(derived_key(seed, &format!("{device_id}/secondary"))),
            None,
            None,
        )
    } else {
        (None, None, None, None)
    };
    let mut tags = Map::new();
    tags.insert("location".into(), Value::from(city));
    tags.insert("building".into(), Value::from(format!("B{building:02}")));
    tags.insert("floor".into(), Value::from(floor));
    tags.insert(
        "environment".into(),
        Value::from(if h2.is_multiple_of(4) {
            "staging"
        } else {
            "production"
        }),
    );
    let mut desired = Map::new();
    desired.insert(
        "telemetryInterval".into(),
        json!(30 * ((h2 >> 16) % 10 + 1)),
    );
    let mut reported = Map::new();
    reported.insert(
        "firmwareVersion".into(),
        Value::from(format!("1.{}.{}", (h2 >> 20) % 5, (h2 >> 28) % 20)),
    );
    let created_text = timestamp(created, fraction);
    let activity_text = if connected || (h >> 56).is_multiple_of(2) {
        timestamp(activity, fraction / 3)
    } else {
        NEVER.to_string()
    };
    DeviceRecord {
        generation_id: format!("63{:016}", h % 10_000_000_000_000_000),
        device_etag: h2 % 1_000_000_000,
        status,
        status_reason: (status == DeviceStatus::Disabled).then(|| "decommissioned".to_string()),
        status_updated_time: NEVER.to_string(),
        connection_state: if connected {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        },
        connection_state_updated_time: activity_text.clone(),
        last_activity_time: activity_text,
        cloud_to_device_message_count: (h >> 12) % 4,
        auth_type: if self_signed {
            AuthType::SelfSigned
        } else {
            AuthType::Sas
        },
        primary_key,
        secondary_key,
        primary_thumbprint,
        secondary_thumbprint,
        iot_edge,
        device_scope: iot_edge
            .then(|| format!("ms-azure-iot-edge://{device_id}-{}", h2 % 1_000_000_000_000)),
        model_id: model_id.to_string(),
        tags,
        desired,
        desired_version: 1,
        desired_updated: created_text.clone(),
        reported,
        reported_version: 1 + (h2 >> 50) % 5,
        reported_updated: created_text,
        twin_version: 2 + (h2 >> 50) % 5,
        device_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_like_indexes_and_round_trip() {
        let ids = SeededIds::new(1_000_000, IdStyle::Sequential);
        assert_eq!(ids.id(7), "device-000007");
        assert!(ids.id(99_999) < ids.id(100_000));
        assert_eq!(ids.index_of("device-000042"), Some(42));
        assert_eq!(ids.index_of("device-42"), None);
        assert_eq!(ids.first_index_after("device-000041"), 42);
        assert_eq!(ids.first_index_after("a"), 0);
        assert_eq!(ids.first_index_after("z"), 1_000_000);
        assert_eq!(ids.first_index_after("device-000041x"), 42);
        assert_eq!(ids.first_index_at_or_after("device-000041"), 41);
    }

    #[test]
    fn every_first_character_ids_sort_like_indexes_and_use_the_whole_alphabet() {
        let ids = SeededIds::new(8_000, IdStyle::EveryFirstCharacter);
        let all: Vec<String> = (0..8_000).map(|i| ids.id(i)).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, all);
        let firsts: std::collections::BTreeSet<char> =
            all.iter().filter_map(|id| id.chars().next()).collect();
        assert_eq!(firsts.len(), DEVICE_ID_CHARACTERS.len());
        for (i, id) in all.iter().enumerate() {
            assert_eq!(ids.index_of(id), Some(i as u64), "{id}");
        }
        assert_eq!(ids.index_of("a000000"), None);
        let sorted_alphabet: Vec<u8> = {
            let mut a = DEVICE_ID_CHARACTERS.as_bytes().to_vec();
            a.sort();
            a
        };
        assert_eq!(sorted_alphabet, DEVICE_ID_CHARACTERS.as_bytes());
    }

    #[test]
    fn the_same_seed_gives_the_same_device() {
        let ids = SeededIds::new(10, IdStyle::Sequential);
        let a =
            serde_json::to_string(&seeded_device(5, &ids, 3, Keys::Derive).twin_json()).unwrap();
        let b =
            serde_json::to_string(&seeded_device(5, &ids, 3, Keys::Derive).twin_json()).unwrap();
        let c =
            serde_json::to_string(&seeded_device(6, &ids, 3, Keys::Derive).twin_json()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// Prints what computing and serializing twins costs in this build; run with
    /// `cargo test -p iothub-emulator --lib twin_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn twin_cost() {
        let ids = SeededIds::new(100_000, IdStyle::Sequential);
        let started = std::time::Instant::now();
        let records: Vec<DeviceRecord> = (0..100_000)
            .map(|i| seeded_device(1, &ids, i, Keys::Skip))
            .collect();
        let generated = started.elapsed();
        let mut out = Vec::new();
        for record in &records {
            serde_json::to_writer(&mut out, &record.twin_json()).unwrap();
        }
        println!(
            "generate {generated:?}, serialize {:?} for 100k twins",
            started.elapsed() - generated
        );
    }
}
