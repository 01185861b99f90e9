//! Phase 5, authorize: the logon is known and hooks see it (filters'
//! AUTH_COMPLETE); the request's entity must fit the URL's limit
//! (MaxRequestEntityAllowed).

use super::*;

impl Pipeline {
    pub(super) fn authorize(&self, x: &mut Exchange) -> Step {
        let site = x.site;
        let (hooks, req) = x.hooks_and_request();
        if !hooks.auth_complete(req, site) {
            return Step::Answer(x.hooks().answer());
        }
        let max_entity = x.cfg.as_ref().map_or(u64::MAX, |c| c.max_entity);
        if let BodyInfo::Length(n) = x.req.body {
            if n > max_entity {
                return Step::Refuse(HttpError::new(413, 0), false);
            }
        }
        Step::Next
    }
}
