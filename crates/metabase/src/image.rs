//! A part of a key tree as plain data, to hand to another process: the
//! activation service gives each worker the keys it serves this way, so
//! a worker never reads MetaBase.xml (nor needs the right to).
//!
//! An image holds no secrets: SECURE data and sealed values are left out
//! when it is taken, and it is rebuilt on the standard schema, whose
//! attributes each property carries with it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::path::{CiName, MbPath};
use crate::schema::Schema;
use crate::store::Snapshot;
use crate::tree::{Key, Property, Tree};
use crate::value::{Attributes, UserType, Value};

/// One key with its data and the children taken with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyImage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<PropertyImage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<KeyImage>,
}

/// One data item of a [`KeyImage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyImage {
    pub id: u32,
    pub value: Value,
    pub attributes: u32,
    pub user_type: u32,
}

/// What to take of a key, as a selector decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Nothing of it, nor of its subtree.
    Skip,
    /// Its data; each child is asked again.
    Key,
    /// Its data and everything below it.
    Subtree,
}

/// Deeper trees than this are refused when an image is rebuilt (a real
/// metabase is a dozen keys deep).
const MAX_DEPTH: usize = 64;

impl Tree {
    /// An image of the keys `select` takes, without SECURE data. The root
    /// is always taken; `select` sees every other key's path.
    pub fn image(&self, select: &dyn Fn(&MbPath) -> Take) -> KeyImage {
        image_of(self.root(), &MbPath::default(), Take::Key, select)
    }
}

fn image_of(key: &Key, path: &MbPath, take: Take, select: &dyn Fn(&MbPath) -> Take) -> KeyImage {
    let props = key
        .properties()
        .filter(|p| !p.attributes.contains(Attributes::SECURE))
        .map(|p| PropertyImage {
            id: p.id,
            value: p.value.clone(),
            attributes: p.attributes.0,
            user_type: p.user_type.0,
        })
        .collect();
    let children = key
        .children()
        .filter_map(|child| {
            let child_path = path.join(child.name()).ok()?;
            let child_take = match take {
                Take::Subtree => Take::Subtree,
                _ => select(&child_path),
            };
            (child_take != Take::Skip).then(|| image_of(child, &child_path, child_take, select))
        })
        .collect();
    KeyImage {
        name: key.name().to_string(),
        props,
        children,
    }
}

impl Snapshot {
    /// Rebuilds a snapshot from an image, on the standard schema. A key
    /// named twice (case-insensitively), an empty or slashed name or a
    /// tree deeper than 64 keys is an error.
    pub fn from_image(image: &KeyImage, change_number: u64) -> Result<Snapshot> {
        let root = key_from(image, 0, true)?;
        Ok(Snapshot::new(
            Tree::new(root, Schema::standard()),
            change_number,
        ))
    }
}

fn key_from(image: &KeyImage, depth: usize, is_root: bool) -> Result<Key> {
    let bad = |why: String| Error::InvalidArgument(format!("configuration image: {why}"));
    if depth > MAX_DEPTH {
        return Err(bad(format!("keys nested deeper than {MAX_DEPTH}")));
    }
    if !is_root && (image.name.is_empty() || image.name.contains('/')) {
        return Err(bad(format!("'{}' cannot name a key", image.name)));
    }
    let mut key = Key {
        name: image.name.clone(),
        ..Key::default()
    };
    for p in &image.props {
        key.props.insert(
            p.id,
            Property {
                id: p.id,
                value: p.value.clone(),
                attributes: Attributes(p.attributes),
                user_type: UserType(p.user_type),
                custom_name: None,
            },
        );
    }
    for child in &image.children {
        let built = key_from(child, depth + 1, false)?;
        let name = CiName::new(built.name.clone());
        if key.children.insert(name, Arc::new(built)).is_some() {
            return Err(bad(format!(
                "key '{}' is named twice under '{}'",
                child.name, image.name
            )));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids;

    fn sample() -> Snapshot {
        let text = r#"<?xml version="1.0" ?>
<configuration xmlns="urn:microsoft-catalog:XML_Metabase_V64_0">
<MBProperty>
<IIS_Global Location="." SessionKey="" />
<IIsComputer Location="/LM" />
<IIsMimeMap Location="/LM/MimeMap" MimeMap=".htm,text/html" />
<IIsWebService Location="/LM/W3SVC" AccessFlags="AccessRead" />
<IIsWebServer Location="/LM/W3SVC/1" ServerBindings=":80:" />
<IIsWebVirtualDir Location="/LM/W3SVC/1/ROOT" Path="/srv/www" AnonymousUserPass="secret" />
<IIsWebServer Location="/LM/W3SVC/2" ServerBindings=":81:" />
</MBProperty>
</configuration>"#;
        let doc = crate::mbxml::parse_metabase(text, "test", &Schema::standard(), None).unwrap();
        Snapshot::new(Tree::new((*doc.root).clone(), Schema::standard()), 9)
    }

    fn p(text: &str) -> MbPath {
        MbPath::parse(text).unwrap()
    }

    #[test]
    fn an_image_takes_what_is_selected_and_no_secret() {
        let snap = sample();
        let only_site_1 = |path: &MbPath| match path.parts().len() {
            1 => Take::Key,
            2 if path.parts()[1].eq_ignore_ascii_case("W3SVC") => Take::Key,
            2 => Take::Subtree,
            3 if path.parts()[2] == "1" => Take::Subtree,
            _ => Take::Skip,
        };
        let image = snap.image(&only_site_1);
        let copy = Snapshot::from_image(&image, 9).unwrap();
        assert_eq!(copy.change_number(), 9);
        let root = p("/LM/W3SVC/1/ROOT");
        assert_eq!(
            copy.effective(&root, ids::PATH),
            Some(Value::String("/srv/www".into()))
        );
        // Inherited from /LM/W3SVC, as in the original.
        assert_eq!(
            copy.effective_dword(&root, ids::ACCESS_FLAGS),
            snap.effective_dword(&root, ids::ACCESS_FLAGS)
        );
        // AnonymousUserPass (SECURE) stays behind.
        let secret = |s: &Snapshot| s.find(&root).unwrap().property(6021).is_some();
        assert!(secret(&snap));
        assert!(!secret(&copy));
        assert!(copy.find(&p("/LM/W3SVC/2")).is_none());
        assert!(copy.find(&p("/LM/MimeMap")).is_some());
        // Through JSON, as it travels.
        let json = serde_json::to_string(&image).unwrap();
        let back: KeyImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, image);
    }

    #[test]
    fn a_bad_image_is_refused() {
        let dup = KeyImage {
            name: String::new(),
            props: Vec::new(),
            children: vec![
                KeyImage {
                    name: "LM".into(),
                    ..KeyImage::default()
                },
                KeyImage {
                    name: "lm".into(),
                    ..KeyImage::default()
                },
            ],
        };
        let e = Snapshot::from_image(&dup, 1).unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        let slash = KeyImage {
            children: vec![KeyImage {
                name: "a/b".into(),
                ..KeyImage::default()
            }],
            ..KeyImage::default()
        };
        assert!(Snapshot::from_image(&slash, 1).is_err());
        let mut deep = KeyImage::default();
        for _ in 0..100 {
            deep = KeyImage {
                name: "k".into(),
                children: vec![deep],
                ..KeyImage::default()
            };
        }
        deep.name = String::new();
        let e = Snapshot::from_image(&deep, 1).unwrap_err().to_string();
        assert!(e.contains("deeper"), "{e}");
    }
}
