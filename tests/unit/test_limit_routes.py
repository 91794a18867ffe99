"""Which body bound a request falls under: a route's own path, or a pattern with `*` for one whole segment."""

from services.api.limits import _route_of

LIMITS = {("POST", "/imports"): 1, ("POST", "/imports/*/retry"): 2}


def test_a_star_stands_for_exactly_one_non_empty_segment():
    assert _route_of("POST", "/imports", LIMITS) == ("POST", "/imports")
    assert _route_of("POST", "/imports/job-1/retry", LIMITS) == ("POST", "/imports/*/retry")
    for path in ("/imports//retry", "/imports/a/b/retry", "/imports/job-1/retry/", "/imports/job-1"):
        assert _route_of("POST", path, LIMITS) == ("POST", path), path
    assert _route_of("PUT", "/imports/job-1/retry", LIMITS) == ("PUT", "/imports/job-1/retry")
