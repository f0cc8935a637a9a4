"""One error root: every exception class of `sagaway.observe` is an `ObserveError`, hence a
`SagawayError`, and keeps the builtin base it had so existing `except ValueError` still works."""

from __future__ import annotations

import pytest

import sagaway.observe
from sagaway.errors import ConfigurationError, ObserveError, SagawayError
from sagaway.observe import alarms, filters, metrics, slo


def _exported_exceptions() -> list[type[BaseException]]:
    found = {}
    for module in (sagaway.observe, alarms, filters, metrics, slo):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                found[value] = None
    return list(found)


def test_every_exception_class_sagaway_observe_exports_is_a_sagaway_error():
    exported = _exported_exceptions()
    assert len(exported) >= 9  # the classes below and ObserveError itself
    for cls in exported:
        assert issubclass(cls, SagawayError), cls
        assert issubclass(cls, ObserveError), cls
    assert "ObserveError" in sagaway.observe.__all__


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (sagaway.observe.FilterPatternError, ValueError),
        (sagaway.observe.MalformedLine, ValueError),
        (sagaway.observe.AlarmDefinitionError, ValueError),
        (sagaway.observe.RuleSyntaxError, ValueError),
        (sagaway.observe.SloSpecError, ValueError),
        (sagaway.observe.AlarmConfigurationError, ValueError),
        (sagaway.observe.EngineMetricReadError, RuntimeError),
        (sagaway.observe.DeliveryError, Exception),
    ],
)
def test_observe_errors_keep_their_builtin_base(cls, builtin):
    assert issubclass(cls, builtin)


def test_configuration_file_errors_are_configuration_errors():
    with pytest.raises(ConfigurationError) as caught:
        alarms.parse_config("alarms: [{name: x, metrik: y}]", source="alarms.yaml")
    assert isinstance(caught.value, ObserveError)
    assert str(caught.value).startswith("alarms.yaml:1: ")
    with pytest.raises(ConfigurationError) as caught:
        slo.parse_slo_spec("service: shop\nslos: []\n", source="slo.yaml")
    assert isinstance(caught.value, ObserveError)
    with pytest.raises(ValueError, match="unknown statistic"):  # a plain argument error
        metrics.parse_statistic("median")
