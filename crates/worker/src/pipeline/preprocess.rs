//! Phase 2, preprocess headers (the listener has read and checked them:
//! phase 1): the site's filters load on first use, and hooks see the
//! head first (filters' PREPROC_HEADERS).

use super::*;

impl Pipeline {
    pub(super) fn preprocess_headers(&self, x: &mut Exchange) -> Step {
        // Filters see the requests clients send (not child requests).
        if x.top {
            let site_filters = self.site_filters(&x.config, x.site);
            if site_filters.broken.is_some() {
                // A filter that did not load (the service log says why).
                return Step::Refuse(HttpError::new(500, 0), false);
            }
            if !site_filters.chain.is_empty() {
                x.filters = Some(crate::filters::RequestFilters::new(
                    &site_filters,
                    x.req.tls.is_some(),
                    x.req.connection,
                    self.resume_connection(x.req.connection),
                ));
            }
        }
        let site = x.site;
        let (hooks, req) = x.hooks_and_request();
        if !hooks.preprocess_headers(req, site) {
            return Step::Answer(x.hooks().answer());
        }
        Step::Next
    }
}
