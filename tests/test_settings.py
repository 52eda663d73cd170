"""Aliases from dicts and URLs; adding and removing them at run time."""

from __future__ import annotations

import pytest

import qplan
from qplan import settings


@pytest.fixture(autouse=True)
def clean():
    yield
    qplan.configure(databases={})


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///rel/path.db", {"ENGINE": "sqlite", "NAME": "rel/path.db"}),
    ("sqlite:////abs/path.db", {"ENGINE": "sqlite", "NAME": "/abs/path.db"}),
    ("sqlite://:memory:", {"ENGINE": "sqlite", "NAME": ":memory:"}),
    ("postgresql://app:p%40ss@db.example:5433/shop?sslmode=disable",
     {"ENGINE": "postgresql", "NAME": "shop", "USER": "app", "PASSWORD": "p@ss", "HOST": "db.example",
      "PORT": 5433, "OPTIONS": {"sslmode": "disable"}}),
    ("mysql://root:pw@127.0.0.1:3307/app", {"ENGINE": "mysql", "NAME": "app", "USER": "root",
                                            "PASSWORD": "pw", "HOST": "127.0.0.1", "PORT": 3307}),
    ("mariadb://u@h/db", {"ENGINE": "mysql", "HOST": "h", "USER": "u", "NAME": "db"}),
])
def test_urls(url, expected):
    spec = settings.normalise("x", url)
    for key, value in expected.items():
        assert spec[key] == value


def test_django_shaped_dicts():
    spec = settings.normalise("x", {"ENGINE": "django.db.backends.postgresql", "NAME": "n", "PORT": "5432"})
    assert spec["ENGINE"] == "postgresql" and spec["PORT"] == 5432 and spec["OPTIONS"] == {}


@pytest.mark.parametrize("spec, message", [
    ("oracle://x/y", "unknown ENGINE 'oracle'"),
    ({"ENGINE": "sqlite"}, "sqlite needs a NAME"),
    ({"ENGINE": "sqlite", "NAME": "x", "PASWORD": "y"}, "unknown key 'PASWORD'; did you mean 'PASSWORD'"),
    ("not a url", "expected a URL"),
    ("postgresql://h:notaport/db", "bad host or port"),
    (42, "expected a URL or a dict"),
])
def test_bad_settings(spec, message):
    with pytest.raises(qplan.ConfigurationError, match=message):
        qplan.configure(databases={"x": spec})


def test_unknown_alias_names_the_known_ones():
    qplan.configure(databases={"default": "sqlite://:memory:", "replica": "sqlite://:memory:"})
    with pytest.raises(qplan.ConfigurationError, match=r"'nope' \(known aliases: default, replica\)"):
        qplan.connections["nope"]


def test_aliases_are_added_and_removed_at_run_time(tmp_path):
    qplan.configure(databases={"default": "sqlite://:memory:"})
    qplan.add_database("extra", f"sqlite:///{tmp_path / 'e.db'}")
    assert "extra" in qplan.connections
    conn = qplan.connections["extra"]
    conn.execute("CREATE TABLE t (x INTEGER)")
    qplan.remove_database("extra")
    assert "extra" not in qplan.connections and conn.raw is None  # closed
    with pytest.raises(qplan.ConfigurationError):
        qplan.connections["extra"]
    with pytest.raises(qplan.ConfigurationError, match="unknown database alias 'extra'"):
        qplan.remove_database("extra")


def test_replacing_an_alias_reconnects_to_the_new_target(tmp_path):
    from testmodels import Author

    qplan.configure(databases={"default": f"sqlite:///{tmp_path / 'a.db'}"})
    qplan.create_tables([Author])
    Author.objects.create(name="a")
    qplan.add_database("default", f"sqlite:///{tmp_path / 'b.db'}")
    qplan.create_tables([Author])
    assert Author.objects.count() == 0


def test_signing_key_is_kept_unless_given_and_none_clears_it():
    qplan.configure(signing_key="k1")
    qplan.configure(databases={})
    assert settings.option("signing_key") == "k1"
    qplan.configure(signing_key=None)
    assert settings.option("signing_key") is None


@pytest.mark.parametrize("spec, message", [
    ({"ENGINE": "postgresql", "PORT": "abc"}, "PORT must be a port number"),
    ({"ENGINE": "postgresql", "PORT": 70000}, "PORT must be a port number"),
    ({"ENGINE": "postgresql", "PORT": True}, "PORT must be a port number"),
    ({"ENGINE": "sqlite", "NAME": "x", "OPTIONS": "x"}, "OPTIONS must be a dict"),
    ({"ENGINE": "postgresql", "HOST": 5}, "HOST must be a str"),
    ({"ENGINE": "sqlite", "NAME": "x", "READ_ONLY": "yes"}, "READ_ONLY must be True or False"),
    ("sqlite:///x.db?read_only=maybe", "read_only='maybe'"),
])
def test_each_bad_setting_is_named(spec, message):
    with pytest.raises(qplan.ConfigurationError, match=message):
        qplan.configure(databases={"x": spec})


@pytest.mark.parametrize("url", [
    "postgresql://app:S3cr3t/pw@host/db",
    "postgresql://app:S3cr3t@host:notaport/db",
    "mysql://app:S3cr3t#x@host/db",
    "S3cr3t",
])
def test_no_error_message_shows_a_password(url):
    with pytest.raises(qplan.ConfigurationError) as failure:
        qplan.configure(databases={"x": url})
    assert "S3cr3t" not in str(failure.value)


def test_read_only_flags():
    assert settings.normalise("x", "sqlite:///a.db?read_only=1")["READ_ONLY"] is True
    assert settings.normalise("x", "postgresql://u@h/d?read_only=false&sslmode=disable") == {
        "ENGINE": "postgresql", "NAME": "d", "USER": "u", "PASSWORD": "", "HOST": "h", "PORT": None,
        "OPTIONS": {"sslmode": "disable"}, "READ_ONLY": False, "CONNECT_TIMEOUT": 5.0,
        "READ_TIMEOUT": 30.0, "POOL": settings.POOL_DEFAULTS}
    assert settings.normalise("x", {"ENGINE": "sqlite", "NAME": "a"})["READ_ONLY"] is False


def test_options_the_driver_refuses_are_a_configuration_error(tmp_path):
    qplan.configure(databases={"x": {"ENGINE": "sqlite", "NAME": str(tmp_path / "x.db"),
                                     "OPTIONS": {"no_such_option": 1}}})
    with pytest.raises(qplan.ConfigurationError, match="'x'.*refused the settings"):
        qplan.connections["x"].execute("SELECT 1")


def test_settings_are_read_only():
    qplan.configure(databases={"x": "sqlite://:memory:"})
    spec = settings.database("x")
    with pytest.raises(TypeError):
        spec["NAME"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec["OPTIONS"]["timeout"] = 1  # type: ignore[index]


def test_a_removed_memory_database_is_gone():
    from testmodels import Author

    qplan.configure(databases={"default": "sqlite://:memory:"})
    qplan.create_tables([Author])
    Author.objects.create(name="a")
    qplan.remove_database("default")
    qplan.add_database("default", "sqlite://:memory:")
    with pytest.raises(qplan.OperationalError, match="no such table"):
        Author.objects.count()


def test_reset_returns_to_a_fresh_state(tmp_path):
    from testmodels import Author

    qplan.configure(databases={"default": f"sqlite:///{tmp_path / 'a.db'}"},
                    routers=[qplan.RoundRobin(["default"])], signing_key="k")
    qplan.create_tables([Author])
    conn = qplan.connections["default"]
    Author.objects.count()
    assert conn.raw is not None and len(qplan.compile_cache) > 0
    qplan.reset()
    assert conn.raw is None and len(qplan.compile_cache) == 0
    assert settings.databases() == {} and settings.option("routers") == ()
    assert settings.option("signing_key") is None
    with pytest.raises(qplan.ConfigurationError, match="unknown database alias 'default'"):
        Author.objects.count()
