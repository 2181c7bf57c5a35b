import { expect } from 'chai';
import { ByteBudget, type BudgetWaiter } from '../../server/net/byte-budget.js';

describe('ByteBudget', () => {
  it('fits what is left, and always fits when no one else holds anything', () => {
    const budget = new ByteBudget(100);
    expect(budget.fits(100, 0)).to.equal(true);
    expect(budget.fits(101, 0)).to.equal(true); // nothing held: one request of any size may go on
    budget.adjust(60);
    expect(budget.fits(40, 0)).to.equal(true);
    expect(budget.fits(41, 0)).to.equal(false);
    expect(budget.fits(500, 60)).to.equal(true); // the asker holds all of it itself
    budget.adjust(-60);
    expect(budget.usedBytes).to.equal(0);
    expect(budget.peakBytes).to.equal(60);
  });

  it('wakes waiters oldest first, and stops at the first that still cannot go on', () => {
    const budget = new ByteBudget(100);
    budget.adjust(100);
    const woken: string[] = [];
    const waiter = (name: string, needs: number): BudgetWaiter => {
      const self: BudgetWaiter = {
        retry: () => {
          woken.push(name);
          if (!budget.fits(needs, 0)) return false;
          budget.adjust(needs);
          return true;
        },
      };
      return self;
    };
    const big = waiter('big', 80);
    const small = waiter('small', 10);
    budget.wait(big);
    budget.wait(small);
    budget.wait(big); // already waiting: keeps its place
    expect(budget.waitingCount).to.equal(2);
    budget.adjust(-50); // 50 free: big (80) cannot go on, and small must not pass it
    expect(woken).to.deep.equal(['big']);
    expect(budget.waitingCount).to.equal(2);
    budget.adjust(-50); // 100 free: big, then small
    expect(woken).to.deep.equal(['big', 'big', 'small']);
    expect(budget.waitingCount).to.equal(0);
    expect(budget.usedBytes).to.equal(90);
  });

  it('skips waiters that stopped waiting', () => {
    const budget = new ByteBudget(10);
    budget.adjust(10);
    const woken: string[] = [];
    const gone: BudgetWaiter = {
      retry: () => {
        woken.push('gone');
        return true;
      },
    };
    const next: BudgetWaiter = {
      retry: () => {
        woken.push('next');
        return true;
      },
    };
    budget.wait(gone);
    budget.wait(next);
    budget.cancel(gone);
    budget.adjust(-10);
    expect(woken).to.deep.equal(['next']);
  });
});
