"""Review 44b M3 (side note): sizing a CPU job of about 19 vCPU chose inf1.6xlarge (Inferentia), because the
embedded specs mark only types with GPU memory as GPU types; every accelerator family is excluded now."""

from care_flows.planning.sizing import right_size
from care_flows.pricing import EmbeddedPrices, is_accelerated


def test_no_accelerator_family_is_offered_without_allow_gpu():
    for region in ("eu-north-1", "us-east-1"):
        cat = EmbeddedPrices().catalog(region)
        families = set(cat.loc[~cat["gpu"], "instance_type"].str.split(".").str[0])
        assert not {f for f in families if f.startswith(("inf", "trn", "dl", "vt")) or f in {"f1", "f2", "p2", "g2"}}, families


def test_a_19_vcpu_cpu_job_gets_a_cpu_type():
    choice = right_size("eu-north-1", 16.0, 3.0)  # + 20 % headroom: 19.2 vCPU (was inf1.6xlarge, 24 vCPU)
    assert not is_accelerated(choice.instance_type), choice
    assert choice.vcpu >= 19.2


def test_a_price_source_that_does_not_flag_inf1_still_gets_a_cpu_type():
    """Review 44d L5: a catalogue (e.g. the AWS Price List's) whose inf1 rows have gpu False."""
    from care_flows.pricing import CATALOG_COLUMNS

    class Unflagged(EmbeddedPrices):
        def catalog(self, region):
            cat = super().catalog(region)[CATALOG_COLUMNS].copy()
            cat["gpu"] = False
            return cat

    choice = right_size("eu-north-1", 16.0, 3.0, prices=Unflagged())
    assert not is_accelerated(choice.instance_type) and choice.vcpu >= 19.2, choice
