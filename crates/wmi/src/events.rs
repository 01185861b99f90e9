//! Intrinsic events ([MS-WMI] 2.2.1.2): `SELECT * FROM
//! __InstanceModificationEvent WITHIN n WHERE TargetInstance ISA
//! 'IIsWebServerSetting'`, and its creation and deletion siblings. As WMI
//! does for providers without events of their own, the configuration is
//! looked at every WITHIN seconds and compared with the last look: a key
//! that appeared is a creation, one that went a deletion, and an instance
//! whose values differ — set on the key or inherited from above — a
//! modification, with the instance before and after.

use std::collections::BTreeMap;

use metabase::{MbPath, Snapshot};

use crate::classes::{ClassKind, ClassModel};
use crate::error::{Result, WbemStatus, WmiError};
use crate::provider::{eval_with, Instance, Provider};
use crate::value::{EmbeddedObject, WmiValue};
use crate::wql::{self, Expr, Query};

/// One event.
#[derive(Clone, Debug)]
pub struct Event {
    /// `__InstanceCreationEvent`, `__InstanceDeletionEvent` or
    /// `__InstanceModificationEvent`.
    pub class: &'static str,
    pub target: Instance,
    /// The instance before a modification.
    pub previous: Option<Instance>,
}

impl Event {
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("__CLASS".into(), self.class.into());
        map.insert("TargetInstance".into(), self.target.to_json());
        if let Some(p) = &self.previous {
            map.insert("PreviousInstance".into(), p.to_json());
        }
        serde_json::Value::Object(map)
    }

    /// The properties a modification changed: name, before, after.
    pub fn changes(&self) -> Vec<(&str, &WmiValue, &WmiValue)> {
        let Some(previous) = &self.previous else {
            return Vec::new();
        };
        self.target
            .properties
            .iter()
            .filter_map(|(name, after)| {
                let before = previous.get(name)?;
                (before != after).then_some((name.as_str(), before, after))
            })
            .collect()
    }
}

/// A parsed, checked event query.
pub struct EventQuery {
    pub query: Query,
    /// WITHIN, in seconds.
    pub within: Option<f64>,
    /// The classes whose instances it can concern (from a top-level
    /// `TargetInstance ISA 'X'`), or every element and setting class.
    targets: Vec<String>,
}

impl EventQuery {
    pub fn parse(model: &ClassModel, text: &str) -> Result<EventQuery> {
        let query = wql::parse(text)?;
        let class = model.class(&query.class.text).ok_or_else(|| {
            WmiError::at(
                WbemStatus::InvalidClass,
                query.class.position,
                format!("there is no class {}", query.class.text),
            )
        })?;
        if class.kind != ClassKind::Event {
            return Err(WmiError::at(
                WbemStatus::InvalidClass,
                query.class.position,
                format!(
                    "{} is not an event class: watch __InstanceCreationEvent, __InstanceDeletionEvent, __InstanceModificationEvent or __InstanceOperationEvent",
                    class.name
                ),
            ));
        }
        if let Some(list) = &query.properties {
            for n in list {
                let base = n.text.split('.').next().unwrap_or_default();
                if class.property(base).is_none() && !base.eq_ignore_ascii_case("__CLASS") {
                    return Err(WmiError::at(
                        WbemStatus::InvalidQuery,
                        n.position,
                        format!("{} has no property {}", class.name, n.text),
                    ));
                }
            }
        }
        let mut isa = None;
        if let Some(filter) = &query.filter {
            check(model, &class.name, filter)?;
            isa = target_isa(filter);
        }
        let targets = model
            .classes()
            .iter()
            .filter(|c| matches!(c.kind, ClassKind::Element | ClassKind::Setting))
            .filter(|c| isa.as_ref().is_none_or(|t| model.is_a(&c.name, t)))
            .map(|c| c.name.clone())
            .collect();
        Ok(EventQuery {
            within: query.within,
            query,
            targets,
        })
    }

    /// The events between two looks at the configuration that the query
    /// selects, in order: creations, modifications, deletions.
    pub fn events(&self, model: &ClassModel, old: &Snapshot, new: &Snapshot) -> Result<Vec<Event>> {
        self.events_within(model, old, new, None)
    }

    /// [`EventQuery::events`] for the instances at or below `scope` only:
    /// the keys a change notification names (a value set on a key is
    /// inherited below it).
    pub fn events_within(
        &self,
        model: &ClassModel,
        old: &Snapshot,
        new: &Snapshot,
        scope: Option<&[MbPath]>,
    ) -> Result<Vec<Event>> {
        let before = self.all(model, old, scope)?;
        let after = self.all(model, new, scope)?;
        let mut out = Vec::new();
        for (path, inst) in &after {
            match before.get(path) {
                None => out.push(Event {
                    class: "__InstanceCreationEvent",
                    target: inst.clone(),
                    previous: None,
                }),
                Some(old) if old.properties != inst.properties => out.push(Event {
                    class: "__InstanceModificationEvent",
                    target: inst.clone(),
                    previous: Some(old.clone()),
                }),
                Some(_) => {}
            }
        }
        for (path, inst) in &before {
            if !after.contains_key(path) {
                out.push(Event {
                    class: "__InstanceDeletionEvent",
                    target: inst.clone(),
                    previous: None,
                });
            }
        }
        let mut selected = Vec::new();
        for e in out {
            if model.is_a(e.class, &self.query.class.text) && self.matches(model, &e)? {
                selected.push(e);
            }
        }
        Ok(selected)
    }

    fn all(
        &self,
        model: &ClassModel,
        snapshot: &Snapshot,
        scope: Option<&[MbPath]>,
    ) -> Result<BTreeMap<String, Instance>> {
        let provider = Provider::new(model, snapshot);
        let mut map = BTreeMap::new();
        for class in &self.targets {
            for inst in provider.instances_of(class)? {
                if inst.class.name != *class {
                    continue;
                }
                if scope.is_some_and(|s| !s.iter().any(|p| inst.path.starts_with(p))) {
                    continue;
                }
                let m = provider.materialize(&inst, None)?;
                map.insert(m.relpath.clone(), m);
            }
        }
        Ok(map)
    }

    fn matches(&self, model: &ClassModel, e: &Event) -> Result<bool> {
        let Some(filter) = &self.query.filter else {
            return Ok(true);
        };
        let object = |i: &Instance| {
            WmiValue::Object(EmbeddedObject {
                class: i.class.clone(),
                properties: i.properties.clone(),
            })
        };
        let get = |name: &str| -> WmiValue {
            let (head, rest) = match name.split_once('.') {
                Some((h, r)) => (h, Some(r)),
                None => (name, None),
            };
            let inst = if head.eq_ignore_ascii_case("TargetInstance") {
                Some(&e.target)
            } else if head.eq_ignore_ascii_case("PreviousInstance") {
                e.previous.as_ref()
            } else if head.eq_ignore_ascii_case("__CLASS") {
                return WmiValue::String(e.class.into());
            } else {
                None
            };
            match (inst, rest) {
                (None, _) => WmiValue::Null,
                (Some(i), None) => object(i),
                (Some(i), Some(prop)) => i.get(prop).cloned().unwrap_or(WmiValue::Null),
            }
        };
        eval_with(model, e.class, &get, filter)
    }
}

/// Names in an event filter are `TargetInstance`, `PreviousInstance`,
/// their properties (`TargetInstance.ServerComment`) or `__CLASS`.
fn check(model: &ClassModel, event_class: &str, e: &Expr) -> Result<()> {
    let name_ok = |n: &wql::Name| {
        let head = n.text.split('.').next().unwrap_or_default();
        let ok = head.eq_ignore_ascii_case("TargetInstance")
            || (head.eq_ignore_ascii_case("PreviousInstance")
                && model.is_a(event_class, "__InstanceModificationEvent"))
            || n.text.eq_ignore_ascii_case("__CLASS")
            || n.text.eq_ignore_ascii_case("__THIS");
        if ok {
            Ok(())
        } else {
            Err(WmiError::at(
                WbemStatus::InvalidQuery,
                n.position,
                format!("{event_class} has no property {}", n.text),
            ))
        }
    };
    match e {
        Expr::Compare { property, .. } | Expr::IsNull { property, .. } => name_ok(property),
        Expr::Isa { property, class } => {
            name_ok(property)?;
            if model.class(&class.text).is_none() {
                return Err(WmiError::at(
                    WbemStatus::InvalidClass,
                    class.position,
                    format!("there is no class {}", class.text),
                ));
            }
            Ok(())
        }
        Expr::Not(a) => check(model, event_class, a),
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(model, event_class, a)?;
            check(model, event_class, b)
        }
    }
}

/// The class of a `TargetInstance ISA 'X'` that every match must satisfy
/// (the filter's top level, or one side of a top-level AND).
fn target_isa(e: &Expr) -> Option<String> {
    match e {
        Expr::Isa { property, class } if property.text.eq_ignore_ascii_case("TargetInstance") => {
            Some(class.text.clone())
        }
        Expr::And(a, b) => target_isa(a).or_else(|| target_isa(b)),
        _ => None,
    }
}
