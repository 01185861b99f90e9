//! Hooks on the request phases: what may watch or change a request at
//! each phase without being its handler. Every method has a default that
//! lets the request go on, so a hook implements only the phases it cares
//! about. ISAPI filters are the hooks IIS has ([`RequestFilters`]); a
//! request with none runs through [`NoHooks`].

use super::*;
use crate::filters::RequestFilters;
use crate::isapi::Variables;

/// What may hook a request's phases. A method returning false stopped
/// the request: [`PhaseHooks::answer`] is then its answer.
pub(super) trait PhaseHooks: Send {
    /// Preprocess headers: the request's head, which a hook may change.
    fn preprocess_headers(&mut self, _req: &mut Request, _site: u32) -> bool {
        true
    }

    /// Map URL: the physical path the URL maps to.
    fn map_url(&mut self, _req: &Request, _site: u32, _physical: &mut String) -> bool {
        true
    }

    /// Authenticate: the credentials the request logs on with (empty
    /// for anonymous), which a hook may replace.
    fn authentication(
        &mut self,
        _req: &Request,
        _site: u32,
        _user: &mut String,
        _password: &mut String,
    ) -> bool {
        true
    }

    /// Authorize: the logon is known; the head may still change.
    fn auth_complete(&mut self, _req: &mut Request, _site: u32) -> bool {
        true
    }

    /// A 401 or 403 is about to be sent; a hook may answer instead.
    fn access_denied(&mut self, _req: &Request, _site: u32, _physical: &str, _reason: u32) -> bool {
        true
    }

    /// The answer of a hook that stopped the request.
    fn answer(&mut self) -> Reply {
        Reply::new(500)
    }

    /// End of request: the response has gone.
    fn end_of_request(&mut self, _vars: &Variables) {}
}

/// No hooks: every phase goes on.
pub(super) struct NoHooks;

impl PhaseHooks for NoHooks {}

impl PhaseHooks for RequestFilters {
    fn preprocess_headers(&mut self, req: &mut Request, site: u32) -> bool {
        let vars = Variables::unmapped(req, site);
        self.preproc_headers(req.head_mut(), &|n| vars.get(n))
    }

    fn map_url(&mut self, req: &Request, site: u32, physical: &mut String) -> bool {
        let vars = Variables::unmapped(req, site);
        self.url_map(&req.url.path, physical, &|n| vars.get(n))
    }

    fn authentication(
        &mut self,
        req: &Request,
        site: u32,
        user: &mut String,
        password: &mut String,
    ) -> bool {
        let vars = Variables::unmapped(req, site);
        RequestFilters::authentication(self, user, password, &|n| vars.get(n))
    }

    fn auth_complete(&mut self, req: &mut Request, site: u32) -> bool {
        let vars = Variables::unmapped(req, site);
        RequestFilters::auth_complete(self, req.head_mut(), &|n| vars.get(n))
    }

    fn access_denied(&mut self, req: &Request, site: u32, physical: &str, reason: u32) -> bool {
        let vars = Variables::unmapped(req, site);
        RequestFilters::access_denied(self, &req.url.path, physical, reason, &|n| vars.get(n))
    }

    /// The answer a filter made itself (SF_STATUS_REQ_FINISHED), or 500
    /// for SF_STATUS_REQ_ERROR.
    fn answer(&mut self) -> Reply {
        let outcome = &mut self.outcome;
        match outcome.answer.take() {
            Some((status, headers, body)) if !outcome.error => {
                let mut reply = Reply::new(status);
                reply.headers = headers;
                reply.body = Body::Bytes(Bytes::from(body));
                reply
            }
            _ => Reply::new(500).html(
                "<html><body><h1>500 Internal Server Error</h1><p>An ISAPI filter failed the request.</p></body></html>"
                    .into(),
            ),
        }
    }

    fn end_of_request(&mut self, vars: &Variables) {
        RequestFilters::end_of_request(self, &|n| vars.get(n));
    }
}
