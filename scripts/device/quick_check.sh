W=/tmp/q; mkdir -p $W
LTSHIM_LOG=info LTSHIM_STATS=$W/s.json timeout 100 .dev/ltshim run --device-limit 2900MiB -- python3 harness/workloads/sparse_mlp.py --out $W/o.pt > $W/log.txt 2>&1; echo "sparse exit $?"
grep "ltshim" $W/log.txt | head -12
python3 -c "
import json;s=json.load(open('$W/s.json'));p=s['packing'];print({k:p[k] for k in ('packs','restores','held_peak_bytes','limit_bytes','restores_over_limit','packs_reused_copy')}, s['fallbacks']['layout_unknown'])"
timeout 60 python3 harness/workloads/sparse_mlp.py --out $W/n.pt > /dev/null 2>&1; echo "native exit $?"
python3 -c "
import torch; a=torch.load('$W/o.pt'); b=torch.load('$W/n.pt'); print('bit-exact', all(torch.equal(a[k],b[k]) for k in b))"
