"""What registering a model and deleting rows cost as the registry grows, and a foreign key
whose target is not registered yet (``ForeignKey("NotImportedYet")``).

Registering a model installs only what it adds (its own accessors and the string
references now resolving to it), so importing N models is linear; delete() and the
reverse relations read one index of the foreign keys pointing at each model, built once
per registry generation, which skips targets that do not resolve yet. Work is counted
(``qplan.related.counts``, ``qplan.incoming.counts``), never timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import qplan
from qplan import Model, fields
from qplan.models import registered_models
from qplan.relations import relations

ROOT = Path(__file__).resolve().parent.parent

# In a child process, so the 400 models stay out of this process's registry.
CHAIN = r"""
import json
import qplan
from qplan import Model, fields, related
from qplan.related import RelatedDescriptor


def chain(n, p):
    '''n models, each pointing back at the one before by name, forward at the next one (not
    declared yet) by name, at itself, and many-to-many at the next one.'''
    before = related.counts["fields"]
    for i in range(n):
        meta = type("Meta", (), {"db_table": f"{p}_{i}"})
        attrs = {"__module__": "chain_" + p, "Meta": meta,
                 "me": fields.ForeignKey("self", null=True, related_name=f"mine{i}"),
                 "hidden": fields.ForeignKey(f"{p}{i + 1}", null=True, related_name="+"),
                 "nxt": fields.ForeignKey(f"{p}{i + 1}", null=True, related_name="before"),
                 "links": fields.ManyToManyField(f"{p}{i + 1}", related_name="linked")}
        if i:
            attrs["prev"] = fields.ForeignKey(f"{p}{i - 1}", null=True)
        type(f"{p}{i}", (Model,), attrs)
    return related.counts["fields"] - before


small, large = chain(100, "a"), chain(300, "b")
get = qplan.get_model
ok = all(isinstance(vars(get(f"b{i}")).get(name), RelatedDescriptor)
         for i in range(299)
         for name in ("b%d_set" % (i + 1), f"mine{i}", "links", "before", "linked")
         if (i or name not in ("before", "linked")))
ok = ok and "+" not in vars(get("b6"))  # related_name="+": no accessor
print(json.dumps([small, large, ok]))
"""


def test_registering_models_costs_linear_work() -> None:
    done = subprocess.run([sys.executable, "-c", CHAIN], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    small, large, ok = json.loads(done.stdout.splitlines()[-1])
    assert ok  # every accessor landed, whichever side was declared first
    assert small > 0
    assert large <= 3.5 * small  # 3x the models, about 3x the work (quadratic: 9x and more)


class CostParent(Model):
    name = fields.CharField(max_length=20)

    class Meta:
        db_table = "reg_cost_parent"


def test_delete_works_beside_a_foreign_key_to_a_model_not_registered_yet(db: str) -> None:
    from testmodels import Author, Book

    class CostDangling(Model):
        to = fields.ForeignKey("CostNotImportedYet", on_delete=fields.CASCADE)

        class Meta:
            db_table = "reg_cost_dangling"

    ann = Author.objects.create(name="ann")
    Book.objects.create(title="t", author=ann)
    assert Author.objects.filter(book__title="t").count() == 1  # reverse relations too
    assert ann.delete() == (2, {"testmodels.Author": 1, "testmodels.Book": 1})

    class CostNotImportedYet(Model):  # resolves it: now it cascades to CostDangling
        class Meta:
            db_table = "reg_cost_not_imported_yet"

    qplan.create_tables([CostNotImportedYet, CostDangling])
    target = CostNotImportedYet.objects.create()
    CostDangling.objects.create(to=target)
    assert target.costdangling_set.count() == 1
    assert target.delete() == (2, {CostNotImportedYet._meta.label: 1,
                                   CostDangling._meta.label: 1})


def test_cascade_counts_follow_models_registered_after_a_delete(db: str) -> None:
    qplan.create_tables([CostParent])
    first = CostParent.objects.create(name="a")
    assert first.delete() == (1, {CostParent._meta.label: 1})  # the map is cached now

    class CostChild(Model):
        parent = fields.ForeignKey(CostParent, on_delete=fields.CASCADE)

        class Meta:
            db_table = "reg_cost_child"

    qplan.create_tables([CostChild])
    second = CostParent.objects.create(name="b")
    CostChild.objects.create(parent=second)
    CostChild.objects.create(parent=second)
    assert second.delete() == (3, {CostParent._meta.label: 1, CostChild._meta.label: 2})


def test_deletes_and_relations_scan_the_registry_once_per_generation(db: str) -> None:
    from qplan import incoming
    from testmodels import Author, Book, Tag

    class CostScan(Model):  # a new generation: the index is stale
        class Meta:
            db_table = "reg_cost_scan"

    before = incoming.counts["models"]
    for meta in (Author._meta, Book._meta, Tag._meta, CostScan._meta):
        relations(meta)
    Author.objects.filter(name="nobody").delete()
    Book.objects.filter(title="nothing").delete()
    once = incoming.counts["models"] - before
    assert 0 < once <= len(registered_models())  # one pass, not one per model
    Author.objects.filter(name="nobody").delete()
    Author.objects.filter(name="nobody").delete()
    assert incoming.counts["models"] - before == once  # no scan per delete


def test_a_target_declared_again_gets_the_accessors_of_string_references() -> None:
    from qplan.related import RelatedDescriptor

    def declare() -> type:
        class CostRedeclared(Model):  # the same key each time: the second replaces the first
            class Meta:
                db_table = "reg_cost_redeclared"

        return CostRedeclared

    first = declare()

    class CostRef(Model):
        to = fields.ForeignKey("CostRedeclared", null=True)

        class Meta:
            db_table = "reg_cost_ref"

    second = declare()
    assert first._meta.key == second._meta.key and first is not second
    assert isinstance(vars(first)["costref_set"], RelatedDescriptor)
    assert isinstance(vars(second)["costref_set"], RelatedDescriptor)
