"""Java's StrictMath `exp`, `log` and `pow`, which Spark calls, bit for bit: Python's libm differs from them in
the last bit for a few percent of inputs. A Python rendering of fdlibm 5.3 (e_exp.c, e_log.c, e_pow.c), the
algorithms StrictMath specifies.

fdlibm: Copyright (C) 1993-2004 by Sun Microsystems, Inc. All rights reserved. Developed at SunSoft, a Sun
Microsystems, Inc. business. Permission to use, copy, modify, and distribute this software is freely granted,
provided that this notice is preserved.
"""

from __future__ import annotations

import math
import struct

_DOUBLE_BITS = struct.Struct("<d")
_UINT64 = struct.Struct("<Q")


def _high_word(x: float) -> int:
    high = _UINT64.unpack(_DOUBLE_BITS.pack(x))[0] >> 32
    return high - (1 << 32) if high & 0x80000000 else high


def _low_word(x: float) -> int:
    return int(_UINT64.unpack(_DOUBLE_BITS.pack(x))[0] & 0xFFFFFFFF)


def _with_high_word(x: float, high: int) -> float:
    low = _UINT64.unpack(_DOUBLE_BITS.pack(x))[0] & 0xFFFFFFFF
    return float(_DOUBLE_BITS.unpack(_UINT64.pack(((high & 0xFFFFFFFF) << 32) | low))[0])


def _without_low_word(x: float) -> float:
    return float(_DOUBLE_BITS.unpack(_UINT64.pack(_UINT64.unpack(_DOUBLE_BITS.pack(x))[0] & ~0xFFFFFFFF))[0])


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_TWO_M1000 = 9.33263618503218878990e-302


def strict_exp(x: float) -> float:
    high = _high_word(x)
    negative = high < 0
    high &= 0x7FFFFFFF
    if high >= 0x40862E42:  # |x| >= 709.78
        if high >= 0x7FF00000:
            if ((high & 0xFFFFF) | _low_word(x)) != 0:
                return x + x
            return 0.0 if negative else x
        if x > 7.09782712893383973096e02:
            return math.inf
        if x < -7.45133219101941108420e02:
            return 0.0
    k = 0
    hi = lo = 0.0
    if high > 0x3FD62E42:  # |x| > 0.5 ln2
        if high < 0x3FF0A2B2:  # |x| < 1.5 ln2
            hi, lo, k = (x + _LN2_HI, -_LN2_LO, -1) if negative else (x - _LN2_HI, _LN2_LO, 1)
        else:
            k = int(_INV_LN2 * x + (-0.5 if negative else 0.5))
            hi = x - k * _LN2_HI
            lo = k * _LN2_LO
        x = hi - lo
    elif high < 0x3E300000:  # |x| < 2^-28
        return 1.0 + x
    t = x * x
    c = x - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    if k == 0:
        return 1.0 - ((x * c) / (c - 2.0) - x)
    y = 1.0 - ((lo - (x * c) / (2.0 - c)) - hi)
    if k >= -1021:
        return math.ldexp(y, k)
    return math.ldexp(y, k + 1000) * _TWO_M1000


_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)


def strict_log(x: float) -> float:
    high, low = _high_word(x), _low_word(x)
    k = 0
    if high < 0x00100000:  # x < 2^-1022
        if ((high & 0x7FFFFFFF) | low) == 0:
            return -math.inf
        if high < 0:
            return math.nan
        k -= 54
        x *= 1.80143985094819840000e16  # 2^54: scale a subnormal up
        high = _high_word(x)
    if high >= 0x7FF00000:
        return x + x
    k += (high >> 20) - 1023
    high &= 0x000FFFFF
    i = (high + 0x95F64) & 0x100000
    x = _with_high_word(x, high | (i ^ 0x3FF00000))  # normalize x or x/2
    k += i >> 20
    f = x - 1.0
    if (0x000FFFFF & (2 + high)) < 3:  # |f| < 2^-20
        if f == 0.0:
            return 0.0 if k == 0 else k * _LN2_HI + k * _LN2_LO
        r = f * f * (0.5 - 0.33333333333333333 * f)
        return f - r if k == 0 else k * _LN2_HI - ((r - k * _LN2_LO) - f)
    s = f / (2.0 + f)
    dk = float(k)
    z = s * s
    i = high - 0x6147A
    w = z * z
    j = 0x6B851 - high
    t1 = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    t2 = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
    i |= j
    r = t2 + t1
    if i > 0:
        half_f_squared = 0.5 * f * f
        if k == 0:
            return f - (half_f_squared - s * (half_f_squared + r))
        return dk * _LN2_HI - ((half_f_squared - (s * (half_f_squared + r) + dk * _LN2_LO)) - f)
    if k == 0:
        return f - s * (f - r)
    return dk * _LN2_HI - ((s * (f - r) - dk * _LN2_LO) - f)


_BP = (1.0, 1.5)
_DP_H = (0.0, 5.84962487220764160156e-01)
_DP_L = (0.0, 1.35003920212974897128e-08)
_L = (
    5.99999999999994648725e-01,
    4.28571428578550184252e-01,
    3.33333329818377432918e-01,
    2.72728123808534006489e-01,
    2.30660745775561754067e-01,
    2.06975017800338417784e-01,
)
_LG2 = 6.93147180559945286227e-01
_LG2_H = 6.93147182464599609375e-01
_LG2_L = -1.90465429995776804525e-09
_OVT = 8.0085662595372944372e-17
_CP = 9.61796693925975554329e-01
_CP_H = 9.61796700954437255859e-01
_CP_L = -7.02846165095275826516e-09
_IVLN2 = 1.44269504088896338700e00
_IVLN2_H = 1.44269502162933349609e00
_IVLN2_L = 1.92596299112661746887e-08


def strict_pow(x: float, y: float) -> float:
    hx, lx = _high_word(x), _low_word(x)
    hy, ly = _high_word(y), _low_word(y)
    ix, iy = hx & 0x7FFFFFFF, hy & 0x7FFFFFFF
    if (iy | ly) == 0:
        return 1.0
    if ix > 0x7FF00000 or (ix == 0x7FF00000 and lx != 0) or iy > 0x7FF00000 or (iy == 0x7FF00000 and ly != 0):
        return x + y
    # y_is_int: 0 when y is not an integer, 1 when odd, 2 when even (only needed for x < 0)
    y_is_int = 0
    if hx < 0:
        if iy >= 0x43400000:
            y_is_int = 2
        elif iy >= 0x3FF00000:
            k = (iy >> 20) - 0x3FF
            if k > 20:
                j = ly >> (52 - k)
                if (j << (52 - k)) == ly:
                    y_is_int = 2 - (j & 1)
            elif ly == 0:
                j = iy >> (20 - k)
                if (j << (20 - k)) == iy:
                    y_is_int = 2 - (j & 1)
    if ly == 0:
        if iy == 0x7FF00000:  # y is +-inf
            if ((ix - 0x3FF00000) | lx) == 0:
                return math.nan
            if ix >= 0x3FF00000:
                return y if hy >= 0 else 0.0
            return -y if hy < 0 else 0.0
        if iy == 0x3FF00000:  # y is +-1
            return x if hy >= 0 else java_divide(1.0, x)
        if hy == 0x40000000:
            return x * x
        if hy == 0x3FE00000 and hx >= 0:
            return math.sqrt(x)
    ax = abs(x)
    if lx == 0 and (ix == 0x7FF00000 or ix == 0 or ix == 0x3FF00000):  # x is +-0, +-inf, +-1
        z = java_divide(1.0, ax) if hy < 0 else ax
        if hx < 0:
            if ((ix - 0x3FF00000) | y_is_int) == 0:
                z = math.nan
            elif y_is_int == 1:
                z = -z
        return z
    n = (hx >> 31) + 1
    if (n | y_is_int) == 0:  # negative ** non-integer
        return math.nan
    sign = -1.0 if (n | (y_is_int - 1)) == 0 else 1.0
    if iy > 0x41E00000:  # |y| > 2^31
        if iy > 0x43F00000:  # |y| > 2^64: over- or underflows
            if ix <= 0x3FEFFFFF:
                return math.inf if hy < 0 else 0.0
            if ix >= 0x3FF00000:
                return math.inf if hy > 0 else 0.0
        if ix < 0x3FEFFFFF:
            return sign * math.inf if hy < 0 else sign * 0.0
        if ix > 0x3FF00000:
            return sign * math.inf if hy > 0 else sign * 0.0
        t = ax - 1.0  # |1 - x| <= 2^-20: log(x) by its series
        w = (t * t) * (0.5 - t * (0.3333333333333333333333 - t * 0.25))
        u = _IVLN2_H * t
        v = t * _IVLN2_L - w * _IVLN2
        t1 = _without_low_word(u + v)
        t2 = v - (t1 - u)
    else:
        n = 0
        if ix < 0x00100000:  # subnormal x
            ax *= 9007199254740992.0
            n -= 53
            ix = _high_word(ax)
        n += (ix >> 20) - 0x3FF
        j = ix & 0x000FFFFF
        ix = j | 0x3FF00000
        if j <= 0x3988E:
            k = 0
        elif j < 0xBB67A:
            k = 1
        else:
            k = 0
            n += 1
            ix -= 0x00100000
        ax = _with_high_word(ax, ix)
        u = ax - _BP[k]
        v = 1.0 / (ax + _BP[k])
        ss = u * v
        s_h = _without_low_word(ss)
        t_h = _with_high_word(0.0, ((ix >> 1) | 0x20000000) + 0x00080000 + (k << 18))
        t_l = ax - (t_h - _BP[k])
        s_l = v * ((u - s_h * t_h) - s_h * t_l)
        s2 = ss * ss
        r = s2 * s2 * (_L[0] + s2 * (_L[1] + s2 * (_L[2] + s2 * (_L[3] + s2 * (_L[4] + s2 * _L[5])))))
        r += s_l * (s_h + ss)
        s2 = s_h * s_h
        t_h = _without_low_word(3.0 + s2 + r)
        t_l = r - ((t_h - 3.0) - s2)
        u = s_h * t_h
        v = s_l * t_h + t_l * ss
        p_h = _without_low_word(u + v)
        p_l = v - (p_h - u)
        z_h = _CP_H * p_h
        z_l = _CP_L * p_h + p_l * _CP + _DP_L[k]
        t = float(n)
        t1 = _without_low_word(((z_h + z_l) + _DP_H[k]) + t)
        t2 = z_l - (((t1 - t) - _DP_H[k]) - z_h)
    y1 = _without_low_word(y)
    p_l = (y - y1) * t1 + y * t2
    p_h = y1 * t1
    z = p_l + p_h
    j, i = _high_word(z), _low_word(z)
    if j >= 0x40900000:  # z >= 1024
        if ((j - 0x40900000) | i) != 0 or p_l + _OVT > z - p_h:
            return sign * math.inf
    elif (j & 0x7FFFFFFF) >= 0x4090CC00:  # z <= -1075
        if (((j & 0xFFFFFFFF) - 0xC090CC00) | i) != 0 or p_l <= z - p_h:
            return sign * 0.0
    i = j & 0x7FFFFFFF
    k = (i >> 20) - 0x3FF
    n = 0
    if i > 0x3FE00000:  # |z| > 0.5: n = [z + 0.5]
        n = j + (0x00100000 >> (k + 1))
        k = ((n & 0x7FFFFFFF) >> 20) - 0x3FF
        t = _with_high_word(0.0, n & ~(0x000FFFFF >> k))
        n = ((n & 0x000FFFFF) | 0x00100000) >> (20 - k)
        if j < 0:
            n = -n
        p_h -= t
    t = _without_low_word(p_l + p_h)
    u = t * _LG2_H
    v = (p_l - (t - p_h)) * _LG2 + t * _LG2_L
    z = u + v
    w = v - (z - u)
    t = z * z
    t1 = z - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    r = (z * t1) / (t1 - 2.0) - (w + z * w)
    z = 1.0 - (r - z)
    return sign * math.ldexp(z, n)


def java_divide(a: float, b: float) -> float:
    """IEEE division, which Python refuses for a zero divisor."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)
