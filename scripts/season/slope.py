import sys
# slope.py FILE LO HI: least-squares bytes per event of RSS between accepted counts LO and HI
f, lo, hi = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
pts = [tuple(map(float, l.split())) for l in open(f) if len(l.split()) == 2]
pts = [(n, r * 1024) for n, r in pts if lo <= n <= hi]
n = len(pts)
mx = sum(p[0] for p in pts) / n; my = sum(p[1] for p in pts) / n
sxy = sum((p[0]-mx)*(p[1]-my) for p in pts); sxx = sum((p[0]-mx)**2 for p in pts)
first = pts[0]; last = pts[-1]
print(f"samples {n}; least-squares slope {sxy/sxx:.1f} B/event; end-to-end {(last[1]-first[1])/(last[0]-first[0]):.1f} B/event ({first[0]:.0f}->{last[0]:.0f} events, {first[1]/2**20:.1f}->{last[1]/2**20:.1f} MiB)")
