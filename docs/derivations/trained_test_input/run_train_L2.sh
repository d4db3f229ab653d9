#!/bin/bash
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
for act in tanh sin; do
  s=10; for n in 32 64 128; do s=$((s+1)); nice -n 19 ./venv/bin/python train.py $act 2 $n 400000 8 $s$( [ $act = sin ] && echo 0 ); done
done
