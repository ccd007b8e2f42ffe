"""CLI commands: cluster (Kubernetes + Kueue setup for a kubernetes profile)."""
from __future__ import annotations

import argparse
import sys

from .context import Context

SETUP_HELP = """\
Print the Kueue and RBAC objects a kubernetes profile needs, as YAML, for an admin to apply:

  dlaas-tui --profile lab cluster setup --tier standard --gpu-product NVIDIA-H100-80GB-HBM3 | kubectl apply -f -

Namespace and LocalQueue come from the profile's [profiles.NAME.kubernetes]; the GPU quota from
--gpus, else the tier's GPUs ([tiers]); WorkloadPriorityClasses from [priorities]."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    cluster = sub.add_parser("cluster", help="Kubernetes cluster setup (Kueue queues, priorities, RBAC)")
    csub = cluster.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    setup = csub.add_parser("setup", help="print the cluster objects as YAML for `kubectl apply -f -`",
                            description=SETUP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    setup.add_argument("--tier", metavar="T", help="a tier from [tiers] (free, standard, ...); default: the profile's")
    setup.add_argument("--gpus", type=int, metavar="N", help="nominal GPU quota (overrides the tier)")
    setup.add_argument("--gpu-product", metavar="P",
                       help="node label value of the GPUs, e.g. NVIDIA-H100-80GB-HBM3 (default: any GPU node)")
    setup.add_argument("--group", metavar="G", help="the users' group bound to the Role (default: NAMESPACE-users)")
    setup.add_argument("--no-priority-classes", action="store_true",
                       help="leave out the WorkloadPriorityClasses (cluster-scoped, shared by every namespace: "
                            "another team's setup may own them)")
    setup.add_argument("--kueue-api", default="v1beta2", choices=("v1beta2", "v1beta1", "auto"),
                       help="the kueue.x-k8s.io version to write: v1beta2 (Kueue ~0.16 on; the default), "
                            "v1beta1 (before ~0.16), or auto: ask the profile's cluster which it serves")
    setup.set_defaults(func=cmd_setup)
    cluster.set_defaults(func=lambda args, ctx: (cluster.print_help(sys.stderr), 2)[1])


def cmd_setup(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import BadInput, get_paths, load_config

    config = load_config(get_paths())
    profile = config.profile(ctx.profile)
    tiers = config.all_tiers()
    if args.gpus is not None:
        if args.gpus < 0:
            raise BadInput("--gpus must be 0 or more")
        gpus = args.gpus
    else:
        tier = args.tier or profile.tier
        if tier not in tiers:
            raise BadInput(f"--tier {tier!r}: not in [tiers] (known: {', '.join(sorted(tiers))})")
        gpus = tiers[tier]
        if gpus == 0:
            raise BadInput(f"tier {tier!r} has no GPU limit; pass --gpus N or a tier with one (free, standard)")
    from backend.facade import kubernetes_cluster_yaml

    k8s = profile.kubernetes
    kueue_api = args.kueue_api
    if kueue_api == "auto":
        from backend.facade import kubernetes_served_kueue_api

        kueue_api = kubernetes_served_kueue_api(profile)
    sys.stdout.write(kubernetes_cluster_yaml(
        namespace=k8s.namespace, queue=k8s.queue, gpus=gpus, gpu_product=args.gpu_product,
        priorities={} if args.no_priority_classes else config.all_priorities(),
        gpu_product_label=k8s.gpu_product_label, group=args.group, kueue_api=kueue_api))
    return 0
